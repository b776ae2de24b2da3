"""Calls to a tier's model through litellm, and what a failure means for escalation.

litellm is imported on the first call, not before: it takes seconds and ~200 MB, and routing
decisions never need it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from types import ModuleType
from typing import Any

from policies import Policy, Tier
from router.errors import ConfigurationError, UpstreamError

# Fields of the request body tierwise consumes itself instead of passing to the provider.
_OWN_FIELDS = {"model"}


@lru_cache(maxsize=1)
def litellm_module() -> ModuleType:
    """Import litellm once, offline: the local price map, no debug spam on errors."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def register_prices(policy: Policy) -> None:
    """Tell litellm the tiers' prices so its cost functions know the policy's models."""
    litellm = litellm_module()
    litellm.register_model({
        tier.model: {
            "input_cost_per_token": tier.input_per_mtok / 1e6,
            "output_cost_per_token": tier.output_per_mtok / 1e6,
            "max_input_tokens": tier.context_window,
            "litellm_provider": tier.model.split("/", 1)[0] if "/" in tier.model else "openai",
            "mode": "chat",
        }
        for tier in policy.tiers
    })


def call_arguments(tier: Tier, body: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """litellm keyword arguments for sending `body` to `tier` (every client field passes)."""
    kwargs = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    kwargs["model"] = tier.model
    kwargs["timeout"] = tier.timeout_s or policy.timeout_s
    # tierwise owns failover between tiers; the OpenAI SDK's hidden retries would triple the
    # wait before a failing tier is abandoned.
    kwargs.setdefault("max_retries", 0)
    if tier.api_base == "builtin":
        from router.simulator import builtin_base_url

        kwargs["api_base"] = builtin_base_url()
        kwargs["api_key"] = "tierwise-simulated"
    elif tier.api_base:
        kwargs["api_base"] = tier.api_base
    if tier.api_key_env:
        key = os.environ.get(tier.api_key_env)
        if not key:
            raise ConfigurationError(
                f"tier {tier.name!r} needs the environment variable {tier.api_key_env} "
                "(its provider API key), which is not set")
        kwargs["api_key"] = key
    elif tier.api_base and tier.api_base != "builtin":
        kwargs.setdefault("api_key", "not-needed")
    return kwargs


def classify_failure(exc: BaseException) -> tuple[bool, int, str]:
    """(retryable on the next tier, HTTP status to report, short reason) for a call failure."""
    litellm = litellm_module()
    status = int(getattr(exc, "status_code", 0) or 0)
    if isinstance(exc, litellm.ContextWindowExceededError):
        return True, 400, "context_window"
    if isinstance(exc, (litellm.Timeout,)):
        return True, 504, "timeout"
    if isinstance(exc, litellm.RateLimitError):
        return True, 429, "rate_limited"
    if isinstance(exc, litellm.APIConnectionError) and not status:
        return True, 502, "connection_error"
    if status >= 500 or isinstance(exc, (litellm.InternalServerError,
                                         litellm.ServiceUnavailableError)):
        return True, 502, f"upstream_{status or 500}"
    if status == 408 or status == 429:
        return True, status, f"upstream_{status}"
    return False, status or 502, f"upstream_{status or 'error'}"


def upstream_error(exc: BaseException, status: int, attempts: list[str]) -> UpstreamError:
    """An UpstreamError for the client, without the provider's key or internal detail."""
    message = str(getattr(exc, "message", "") or exc).strip() or type(exc).__name__
    return UpstreamError(f"upstream call failed: {message[:500]}", status_code=status,
                         attempts=attempts)
