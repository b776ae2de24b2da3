"""tierwise: send each LLM request to the cheapest model tier that will answer it well.

    from router import route, complete, acomplete, Router
    route("What is 2+2?")            # -> Decision (no network)
    complete("What is 2+2?")         # -> litellm response with .tierwise routing info
    app.add_middleware(TierwiseMiddleware, policy=...)   # routing inside a Starlette app
"""

from policies import Decision, Policy, PolicyError, load_policy
from router.engine import Router, Routing
from router.errors import (
    ConfigurationError,
    InvalidRequestError,
    NoEligibleTierError,
    TierwiseError,
    UpstreamError,
)
from router.middleware import TierwiseMiddleware
from router.sdk import acomplete, complete, route

__all__ = [
    "ConfigurationError", "Decision", "InvalidRequestError", "NoEligibleTierError", "Policy",
    "PolicyError", "Router", "Routing", "TierwiseError", "TierwiseMiddleware", "UpstreamError",
    "acomplete", "complete", "load_policy", "route",
]
