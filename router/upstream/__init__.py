"""Calling a tier: the pass-through and its HTTP client, litellm, deployments, response checks."""
