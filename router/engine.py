"""The Router: score a request, decide a tier, call it, escalate when the tier does not answer well.

`Router.route` / `Router.decide` make no network call. `Router.serve` is the request path shared by
the proxy and the ASGI middleware: it works on OpenAI JSON dicts and returns an `Outcome` (a
response dict or an async iterator of chunk dicts, plus the `Routing`). `Router.acomplete` and
`Router.complete` are the SDK twins; they return litellm's response objects with a `tierwise`
attribute.

Escalation, bounded by the policy's `max_escalations` (one budget for all kinds):
1. low confidence before the call and 2. context-window skips happen in `policies.decide`;
3. a retryable upstream failure (429, 5xx, timeout, connection error) moves to the next tier;
4. a non-stream answer failing a response check (router/upstream/checks.py) is re-asked on the next
tier. A stream escalates only before its first byte reaches the client: its first chunks are held
back until the answer has begun, so an upstream that fails, stalls or ends empty before that
(after a role-only chunk or an SSE comment, say) still escalates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from policies import Policy, Tier
from router.accounting.records import clean_usage, estimate_usage
from router.coalescing.inflight import Coalescer, InProcessCoalescer, coalesce_key
from router.coalescing.solo import Solo
from router.decider import Decider
from router.errors import TierwiseError, UpstreamError
from router.messages import as_messages
from router.relay import ChunkStream, Relay
from router.routing import Listener, Outcome, Routing, price, tier_cost
from router.upstream.calls import Upstream, classify_failure, dump, upstream_error
from router.upstream.checks import check_response


class Router(Decider):
    """Routes OpenAI-style chat requests across the tiers of one policy (decisions: Decider)."""

    def __init__(self, policy: Policy | str | Path | None = None, *, scorer: Any = None,
                 coalescer: Coalescer | None = None) -> None:
        super().__init__(policy, scorer=scorer)
        self.upstream = Upstream(self.policy)
        self.coalescer: Coalescer = coalescer or InProcessCoalescer()
        self.listeners: list[Listener] = []
        self.failure_listeners: list[Listener] = []
        self._tiers: dict[str, Tier] = {}  # name -> tier of self._tiers_of, see _tier
        self._tiers_of: Policy | None = None

    # --- the async request path (proxy, middleware, acomplete) --------------------------------

    async def serve(self, body: dict[str, Any], *, pin: str | None = None,
                    coalesce: bool = True, tenant: str | None = None) -> Outcome:
        """Route and answer one chat request body; raises TierwiseError subclasses.

        `tenant` (the caller's API key id, from the proxy) keeps its requests from sharing an
        upstream call with another tenant's, unless the policy says `coalesce_across_keys`."""
        started = time.perf_counter()
        decision = await self.adecide(body, pin)
        decision_ms = (time.perf_counter() - started) * 1000
        # One Routing per request, filled in as it goes: what listeners see when it is
        # answered, and what failure listeners see if no tier answers.
        routing = Routing(decision, decision.tier, decision.model, list(decision.escalations),
                          stream=bool(body.get("stream")), started=started,
                          decision_ms=decision_ms, body=body)
        try:
            if self.policy.coalesce_across_keys:
                tenant = None
            return await self._serve(body, coalesce, routing, tenant)
        except asyncio.CancelledError:
            routing.outcome, routing.status = "cancelled", 499
            self._notify_failure(routing)
            raise
        except TierwiseError as exc:
            routing.outcome, routing.status = "upstream_error", exc.status_code
            self._notify_failure(routing)
            raise

    async def _serve(self, body: dict[str, Any], coalesce: bool, routing: Routing,
                     tenant: str | None = None) -> Outcome:
        decision, stream, escalations = routing.decision, routing.stream, routing.escalations
        plan = self.plan(decision)
        solo = not (coalesce and self.policy.coalesce)
        joiner: Coalescer = Solo(self.coalescer) if solo else self.coalescer
        checks = self.policy.response_checks
        for i, name in enumerate(plan):
            tier = self._tier(name)
            routing.tier, routing.model = tier.name, tier.model
            nxt = plan[i + 1] if i + 1 < len(plan) else None
            served: dict[str, Any] = {}  # the deployment that answered, if this waiter calls
            # a Solo flight is never looked up: its key need not be computed (hash of the body)
            key = tier.name if solo else coalesce_key(body, tier.name, tenant)
            sub = joiner.join(key, self._starter(tier, body, stream, served), stream=stream)
            try:
                if stream:
                    started = await sub.wait_output()
                else:
                    response = await sub.response()
            except asyncio.CancelledError:
                sub.close()
                raise
            except Exception as exc:  # noqa: BLE001 - classified: escalate or raise
                sub.close()
                # Nothing of this answer has reached the client yet (a stream waiter's first
                # byte goes out only after wait_output; a non-stream one's at the end), even
                # when the upstream had sent events (a role-only chunk, a comment) or a shared
                # call broke half-way: a broken stream may still move on to the next tier.
                self._escalate_or_raise(exc, name, nxt, escalations, sent_nothing=True)
                continue
            if stream:
                if not started and "empty" in checks and nxt is not None:
                    sub.close()
                    escalations.append(f"empty:{name}->{nxt}")
                    continue
                self._answered(routing, sub.coalesced, served)
                return Outcome(routing, stream=Relay(sub, body, routing, self._notify,
                                                     self._notify_failure))
            # the whole answer is here: whoever pays for the call (one waiter) is decided
            # before leaving it (router.coalescing.inflight.claim_bill)
            pays = sub.claim_bill(True)
            sub.close()
            usage = _usage_of(response, routing.decision.n_tokens)
            bad = check_response(response, body, checks)
            if bad and nxt is not None:
                escalations.append(f"{bad}:{name}->{nxt}")
                if pays:  # this request paid for the discarded answer
                    routing.prior_cost_usd += tier_cost(tier, usage)
                continue
            self._answered(routing, not pays, served)
            routing.failed_check = bad
            routing.usage = usage
            self._notify(routing)
            return Outcome(routing, response=response)
        raise UpstreamError("no tier answered", attempts=escalations)  # plan is never empty

    @staticmethod
    def _answered(routing: Routing, coalesced: bool, served: dict[str, Any]) -> None:
        routing.coalesced = coalesced
        if served:
            routing.deployment, routing.zone = served.get("deployment"), served.get("zone")

    def _tier(self, name: str) -> Tier:
        if self._tiers_of is not self.policy:  # (re)built for the policy in use
            self._tiers_of = self.policy
            self._tiers = {t.name: t for t in self.policy.tiers}
        tier = self._tiers.get(name)
        if tier is None:  # decide() only names tiers of this policy
            raise RuntimeError(f"tier {name!r} vanished from the policy")
        return tier

    def _starter(self, tier: Tier, body: dict[str, Any], stream: bool,
                 served: dict[str, Any]) -> Callable[[], Any]:
        if stream:
            return lambda: self.upstream.astream(tier, body, served)
        return lambda: self.upstream.acall(tier, body, served)

    def _notify(self, routing: Routing) -> None:
        if routing.latency_ms is None:
            routing.latency_ms = (time.perf_counter() - routing.started) * 1000
        if routing.cost_usd is None:
            price(routing, self._tier(routing.tier), self.policy.largest)
        for listener in self.listeners:
            listener(routing)

    def _notify_failure(self, routing: Routing) -> None:
        if routing.latency_ms is None:
            routing.latency_ms = (time.perf_counter() - routing.started) * 1000
        for listener in self.failure_listeners:
            listener(routing)

    @staticmethod
    def _escalate_or_raise(exc: Exception, name: str, nxt: str | None,
                           escalations: list[str], sent_nothing: bool = False) -> None:
        if isinstance(exc, TierwiseError):
            raise exc
        retryable, status, reason = classify_failure(exc)
        retryable = retryable or (sent_nothing and reason.startswith("stream_"))
        if not retryable or nxt is None:
            raise upstream_error(exc, status, [*escalations, f"{reason}:{name}"],
                                 tier=name) from exc
        escalations.append(f"{reason}:{name}->{nxt}")

    # --- SDK ------------------------------------------------------------------------------------

    async def acomplete(self, prompt_or_messages: str | Sequence[dict[str, Any]],
                        **fields: Any) -> Any:
        """Route and call (async); a litellm ModelResponse, or an async iterator of chunks,
        with `.tierwise` (a Routing). Identical concurrent calls are coalesced."""
        body = {**fields, "messages": as_messages(prompt_or_messages)}
        outcome = await self.serve(body)
        litellm = self.upstream.prepare()
        if outcome.stream is not None:
            return ChunkStream(outcome.stream, outcome.routing, litellm.ModelResponseStream)
        response = litellm.ModelResponse(**(outcome.response or {}))
        response.tierwise = outcome.routing
        return response

    def complete(self, prompt_or_messages: str | Sequence[dict[str, Any]], **fields: Any) -> Any:
        """Route and call through litellm (blocking twin of `acomplete`, without coalescing)."""
        body = {**fields, "messages": as_messages(prompt_or_messages)}
        started = time.perf_counter()
        decision = self.decide(body)
        decision_ms = (time.perf_counter() - started) * 1000
        plan = self.plan(decision)
        escalations = list(decision.escalations)
        for i, name in enumerate(plan):
            tier = self._tier(name)
            nxt = plan[i + 1] if i + 1 < len(plan) else None
            try:
                response = self.upstream.call(tier, body)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - classified: escalate or raise
                self._escalate_or_raise(exc, name, nxt, escalations)
                continue
            routing = Routing(decision, tier.name, tier.model, escalations,
                              stream=bool(body.get("stream")), started=started,
                              decision_ms=decision_ms)
            if not body.get("stream"):
                data = dump(response)
                routing.failed_check = check_response(data, body, self.policy.response_checks)
                if routing.failed_check and nxt is not None:
                    escalations.append(f"{routing.failed_check}:{name}->{nxt}")
                    continue
                routing.usage = data.get("usage")
                self._notify(routing)
                # The caller gets a copy, as from acomplete: litellm's logging thread may still
                # be serializing its own object, and setting an attribute on that one made
                # pydantic-core panic there ("dictionary changed size during iteration").
                response = type(response)(**data)
            response.tierwise = routing
            return response
        raise UpstreamError("no tier answered", attempts=escalations)


def _usage_of(response: dict[str, Any], prompt_tokens: int) -> dict[str, Any]:
    """A non-stream answer's usage, checked (router.accounting.records.clean_usage); estimated
    from its text when the upstream sent none or a malformed one: a paid answer is charged."""
    usage = clean_usage(response.get("usage"))
    if usage is not None:
        return usage
    chars = 0
    for choice in response.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            content = message.get("content")
            chars += len(content) if isinstance(content, str) else 0
            if message.get("tool_calls"):
                chars += len(str(message["tool_calls"]))
    return estimate_usage(prompt_tokens, chars)


def iter_text(stream: Any) -> Iterator[str]:
    """The text deltas of a litellm stream, for quick printing."""
    for chunk in stream:
        for choice in getattr(chunk, "choices", []) or []:
            delta = getattr(choice, "delta", None)
            if delta is not None and getattr(delta, "content", None):
                yield delta.content
