"""Calls to a tier's model through litellm, and what a failure means for escalation.

litellm is imported on the first call, not before: it takes seconds and ~200 MB, and routing
decisions never need it. `Upstream` is the one place that calls a tier, three ways:

- a tier whose provider speaks OpenAI's protocol as it is (``openai/``, ``hosted_vllm/``, the
  builtin simulator) goes through router/upstream/passthrough.py: the client's body with only
  `model` replaced, over a keep-alive connection pool (router/upstream/connection.py), ~0.1 ms CPU
  per call instead of litellm's ~4 ms;
  ``transport = "litellm"`` on the tier keeps litellm;
- any other single-deployment tier goes to `litellm.acompletion` (it translates the protocol);
- a tier with `deployments` goes through a `litellm.Router` (router/upstream/deployments.py), which
  owns retries and cooldowns inside the tier.

Results come back as plain dicts (OpenAI JSON shapes), the form the proxy sends and coalescing
shares. The async paths are the proxy's; `call` (blocking, the sync SDK) always uses litellm.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from policies import Policy, Tier
from router.errors import ConfigurationError, UpstreamError

log = logging.getLogger("tierwise.upstream")

# Fields of the request body tierwise consumes itself instead of passing to the provider.
_OWN_FIELDS = {"model"}
# OpenAI body fields that litellm takes as its own arguments and would not forward; they travel
# in extra_body so that every client field reaches an OpenAI-compatible provider.
_LITELLM_OWN = {"metadata"}


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
    models = {}
    for tier in policy.tiers:
        for model in {tier.model, *(d.model for d in tier.deployments)}:
            models[model] = {
                "input_cost_per_token": tier.input_per_mtok / 1e6,
                "output_cost_per_token": tier.output_per_mtok / 1e6,
                "max_input_tokens": tier.context_window,
                "litellm_provider": model.split("/", 1)[0] if "/" in model else "openai",
                "mode": "chat",
            }
    # litellm warns once per model it has no cache prices for: noise for a policy's own prices.
    logger = logging.getLogger("LiteLLM")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        litellm.register_model(models)
    finally:
        logger.setLevel(level)


def endpoint_arguments(model: str, api_base: str | None, api_key_env: str | None,
                       tier_name: str) -> dict[str, Any]:
    """model / api_base / api_key for one endpoint ("builtin" is the simulated upstream)."""
    kwargs: dict[str, Any] = {"model": model}
    if api_base == "builtin":
        from router.upstream.simulator import builtin_base_url

        kwargs["api_base"] = builtin_base_url()
        kwargs["api_key"] = "tierwise-simulated"
    elif api_base:
        kwargs["api_base"] = api_base
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigurationError(
                f"tier {tier_name!r} needs the environment variable {api_key_env} "
                "(its provider API key), which is not set")
        kwargs["api_key"] = key
    elif api_base and api_base != "builtin":
        kwargs.setdefault("api_key", "not-needed")
    return kwargs


def request_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """The client's fields as litellm arguments, arranged so that litellm forwards all of them."""
    kwargs = {k: v for k, v in body.items() if k not in _OWN_FIELDS and k not in _LITELLM_OWN}
    extra = {k: body[k] for k in _LITELLM_OWN if k in body}
    if extra:
        kwargs["extra_body"] = {**(body.get("extra_body") or {}), **extra}
    # litellm drops (`user` for unknown models) or refuses (UnsupportedParamsError) fields it does
    # not list for a model; the client asked for them, so the provider should see them.
    passed = [k for k in kwargs if k not in {"messages", "stream", "extra_body"}]
    if passed:
        kwargs["allowed_openai_params"] = passed
    return kwargs


def call_arguments(tier: Tier, body: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """litellm keyword arguments for sending `body` to a single-deployment `tier`."""
    kwargs = request_arguments(body)
    kwargs.update(endpoint_arguments(tier.model, tier.api_base, tier.api_key_env, tier.name))
    kwargs["timeout"] = tier.timeout_s or policy.timeout_s
    # tierwise owns failover between tiers; the OpenAI SDK's hidden retries would triple the
    # wait before a failing tier is abandoned.
    kwargs.setdefault("max_retries", 0)
    return kwargs


@dataclass(frozen=True)
class Direct:
    """Where a pass-through call for a tier goes."""

    base_url: str
    model: str
    api_key: str | None
    timeout: float
    key_header: str = "authorization"


class Upstream:
    """Calls the tiers of one policy; returns OpenAI-shaped dicts (or an iterator of chunks)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._prices_registered = False
        self._routers: dict[str, Any] = {}
        self._direct: dict[str, Direct | None] = {}
        self._green: dict[str, Any] = {}

    def direct(self, tier: Tier) -> Direct | None:
        """The pass-through target of `tier`, or None when litellm must make the call."""
        if tier.name not in self._direct:
            self._direct[tier.name] = self._resolve_direct(tier)
        return self._direct[tier.name]

    def _resolve_direct(self, tier: Tier) -> Direct | None:
        if tier.deployments or tier.transport == "litellm":
            return None
        from router.upstream.passthrough import resolve_target

        endpoint = endpoint_arguments(tier.model, tier.api_base, tier.api_key_env, tier.name)
        target = resolve_target(tier.model, endpoint.get("api_base"))
        if target is None:
            return None
        key = endpoint.get("api_key")
        if key is None and target.key_header == "api-key":
            key = os.environ.get("AZURE_API_KEY")  # where litellm looks for Azure's key too
        return Direct(target.base_url, target.model, None if key == "not-needed" else key,
                      tier.timeout_s or self.policy.timeout_s, target.key_header)

    def prepare(self) -> ModuleType:
        litellm = litellm_module()
        if not self._prices_registered:
            register_prices(self.policy)
            self._prices_registered = True
        return litellm

    def _router(self, tier: Tier) -> Any:
        if tier.name not in self._routers:
            from router.upstream.deployments import build_router

            self._routers[tier.name] = build_router(tier, self.policy)
        return self._routers[tier.name]

    def _picker(self, tier: Tier) -> Any:  # a GreenPicker
        """The carbon-aware deployment picker of `tier`, or None
        (router/upstream/deployments.py)."""
        if not (tier.deployments and self.policy.carbon_aware):
            return None
        if tier.name not in self._green:
            from router.upstream.deployments import GreenPicker

            self._green[tier.name] = GreenPicker(tier, self.policy)
        return self._green[tier.name]

    async def acall(self, tier: Tier, body: dict[str, Any],
                    served: dict[str, Any] | None = None) -> dict[str, Any]:
        """A non-stream call; the provider's response as a dict. `served` gets the
        `deployment` and `zone` that answered when the tier has several."""
        picker = self._picker(tier)
        if picker is not None:
            return await picker.call(lambda t: self.acall(t, body), served)
        direct = self.direct(tier)
        if direct is not None:
            from router.upstream.passthrough import chat_completion

            # one copy of the body: without the stream fields, with the tier's model
            sent = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
            sent["model"] = direct.model
            return await chat_completion(direct.base_url, direct.api_key, sent, direct.timeout,
                                         key_header=direct.key_header)
        response = await self._acompletion(tier, {**body, "stream": False})
        _note_deployment(tier, response, served)
        return dump(response)

    async def astream(self, tier: Tier, body: dict[str, Any],
                      served: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        """Open a stream; HTTP errors raise here, before any chunk exists (so escalation can
        still happen). Usage is always asked for so cost can be charged. The iterator yields
        chunk dicts, or lists of them (pass-through: one list per network read)."""
        picker = self._picker(tier)
        if picker is not None:
            return await picker.call(lambda t: self.astream(t, body), served)
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        body = {**body, "stream": True, "stream_options": options}
        direct = self.direct(tier)
        if direct is not None:
            from router.upstream.passthrough import open_chat_stream

            body["model"] = direct.model  # (our own copy: no further one on the way)
            opened = await open_chat_stream(direct.base_url, direct.api_key, body,
                                            direct.timeout, key_header=direct.key_header)
            return opened.limit_call(self.policy.max_call_s).checked_batches()
        deadline = asyncio.get_running_loop().time() + self.policy.max_call_s
        response = await self._acompletion(tier, body)
        _note_deployment(tier, response, served)
        return _chunks(response, deadline)

    async def _acompletion(self, tier: Tier, body: dict[str, Any]) -> Any:
        litellm = self.prepare()
        if tier.deployments:
            kwargs = request_arguments(body)
            return await self._router(tier).acompletion(model=tier.name, **kwargs)
        return await litellm.acompletion(**call_arguments(tier, body, self.policy))

    def call(self, tier: Tier, body: dict[str, Any]) -> Any:
        """A blocking call (the sync SDK); returns litellm's own response object."""
        litellm = self.prepare()
        if tier.deployments:
            return self._router(tier).completion(model=tier.name, **request_arguments(body))
        return litellm.completion(**call_arguments(tier, body, self.policy))


def _note_deployment(tier: Tier, response: Any, served: dict[str, Any] | None) -> None:
    """Which deployment litellm.Router chose (its model_info id is the deployment name)."""
    if served is None or not tier.deployments:
        return
    hidden = getattr(response, "_hidden_params", None) or {}
    name = hidden.get("model_id")
    if name is not None:
        zone = next((d.zone for d in tier.deployments if d.name == name), None)
        served.update(deployment=name, zone=zone)


def dump(obj: Any) -> dict[str, Any]:
    """A litellm response or chunk as the plain JSON dict a client would receive."""
    data: dict[str, Any] = obj.model_dump(exclude_none=True)
    for choice in data.get("choices") or []:
        # litellm-internal bookkeeping, not part of the OpenAI wire format
        choice.pop("provider_specific_fields", None)
        for part in ("message", "delta"):
            if isinstance(choice.get(part), dict):
                choice[part].pop("provider_specific_fields", None)
    return data


async def _chunks(stream: Any, deadline: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """litellm's chunks as dicts; TimeoutError once the call passes `deadline` (loop time: the
    policy's max_call_s, however steadily the chunks come)."""
    try:
        if deadline is None:
            async for chunk in stream:
                yield dump(chunk)
            return
        loop = asyncio.get_running_loop()
        chunks = stream.__aiter__()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("the upstream call ran past its limit (max_call_s)")
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), left)
            except StopAsyncIteration:
                return
            yield dump(chunk)
    finally:
        # A cancelled flight must give its HTTP connection back at once, not at GC time.
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def classify_failure(exc: BaseException) -> tuple[bool, int, str]:
    """(retryable on the next tier, HTTP status to report, short reason) for a call failure."""
    passthrough = sys.modules.get("router.upstream.passthrough")
    if passthrough is not None and isinstance(exc, passthrough.PassthroughError):
        return passthrough.classify(exc)
    litellm = litellm_module()
    status = int(getattr(exc, "status_code", 0) or 0)
    if isinstance(exc, litellm.ContextWindowExceededError):
        return True, 400, "context_window"
    cause = _transport_cause(exc)
    if isinstance(exc, litellm.Timeout) or cause == "timeout":
        return True, 504, "timeout"
    if isinstance(exc, litellm.RateLimitError):
        return True, 429, "rate_limited"
    if isinstance(exc, litellm.APIConnectionError) or cause == "connection":
        return True, 502, "connection_error"
    if status >= 500 or isinstance(exc, (litellm.InternalServerError,
                                         litellm.ServiceUnavailableError)):
        return True, 502, f"upstream_{status or 500}"
    if status == 408 or status == 429:
        return True, status, f"upstream_{status}"
    return False, status or 502, f"upstream_{status or 'error'}"


def _transport_cause(exc: BaseException) -> str | None:
    """"timeout" / "connection" when the failure started below HTTP. litellm reports a refused
    connection as InternalServerError (status 500); the exception chain still shows the truth."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        names = {c.__name__ for c in type(seen).__mro__}
        if names & {"APITimeoutError", "TimeoutException", "TimeoutError", "ServerTimeoutError"}:
            return "timeout"
        if names & {"APIConnectionError", "ConnectError", "ClientConnectorError",
                    "ConnectionError", "ServerDisconnectedError", "RemoteProtocolError"}:
            return "connection"
        seen = seen.__cause__ or seen.__context__
    return None


# A provider refusing tierwise's own credentials. Relayed as is, the client would blame its own
# key (which the proxy accepted): it is the operator's tier configuration that is wrong.
UPSTREAM_AUTH_STATUSES = (401, 403)


def upstream_error(exc: BaseException, status: int, attempts: list[str],
                   tier: str | None = None) -> UpstreamError:
    """An UpstreamError for the client, without the provider's key or internal detail."""
    message = str(getattr(exc, "message", "") or exc).strip() or type(exc).__name__
    if status in UPSTREAM_AUTH_STATUSES:
        # the provider's own words stay in the log (they may quote part of the key)
        log.warning("tier %s: the provider refused tierwise's credentials (HTTP %d): %s",
                    tier, status, message[:500])
        error = UpstreamError(
            f"the provider behind tier {tier!r} refused this proxy's credentials for it "
            f"(HTTP {status}); the proxy's operator must fix that tier's API key. Your own "
            "API key was accepted.", status_code=502, attempts=attempts)
        error.code = "upstream_auth_failed"
        return error
    return UpstreamError(f"upstream call failed: {message[:500]}", status_code=status,
                         attempts=attempts)
