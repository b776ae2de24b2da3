"""Calling a tier: litellm, the pass-through and its HTTP client, deployments, checks, simulator."""
