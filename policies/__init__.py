"""tierwise policies: what a difficulty score means in money.

A policy is a TOML file: tiers ordered cheapest first, each with a litellm model, an ability and
prices, and the rules (quality target, confidence, escalation) that pick a tier for a request.
"""

from policies.decide import Decision, NoEligibleTier, RequestFacts, decide
from policies.errors import PolicyError
from policies.loader import load_policy, parse_policy, shipped_policy_path
from policies.schema import Deployment, LedgerSettings, Policy, Tier

__all__ = [
    "Decision", "Deployment", "LedgerSettings", "NoEligibleTier", "Policy", "PolicyError",
    "RequestFacts", "Tier",
    "decide", "load_policy", "parse_policy", "shipped_policy_path",
]
