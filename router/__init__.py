"""tierwise: send each LLM request to the cheapest model tier that will answer it well.

    from router import route, complete, acomplete, Router
    route("What is 2+2?")            # -> Decision (no network)
    complete("What is 2+2?")         # -> litellm response with .tierwise routing info
    app.add_middleware(TierwiseMiddleware, policy=...)   # routing inside a Starlette app

The names below are imported on first use (PEP 562), so `import router.cli` or
`from router import route` does not pay for asyncio, the proxy or the middleware.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies import Decision, Policy, PolicyError, load_policy
    from router.engine import Router, Routing
    from router.errors import (
        ConfigurationError,
        InvalidRequestError,
        NoEligibleTierError,
        TierwiseError,
        UpstreamError,
    )
    from router.sdk import acomplete, complete, route
    from router.serving.middleware import TierwiseMiddleware

# name -> module that defines it
_EXPORTS = {
    "Decision": "policies", "Policy": "policies", "PolicyError": "policies",
    "load_policy": "policies",
    "Router": "router.engine", "Routing": "router.engine",
    "ConfigurationError": "router.errors", "InvalidRequestError": "router.errors",
    "NoEligibleTierError": "router.errors", "TierwiseError": "router.errors",
    "UpstreamError": "router.errors",
    "TierwiseMiddleware": "router.serving.middleware",
    "acomplete": "router.sdk", "complete": "router.sdk", "route": "router.sdk",
}

__all__ = [
    "ConfigurationError", "Decision", "InvalidRequestError", "NoEligibleTierError", "Policy",
    "PolicyError", "Router", "Routing", "TierwiseError", "TierwiseMiddleware", "UpstreamError",
    "acomplete", "complete", "load_policy", "route",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # `router.engine` after a bare `import router`, as when __init__ imported it eagerly
        if not name.startswith("_") and importlib.util.find_spec(f"router.{name}") is not None:
            return importlib.import_module(f"router.{name}")
        raise AttributeError(f"module 'router' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
