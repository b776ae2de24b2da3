"""The Router: score a request, decide a tier, call it through litellm, escalate on failure.

`Router.route` makes no network call. `Router.complete` / `Router.acomplete` are sync and async
twins that return litellm's response with a `tierwise` attribute (a `Routing`) explaining what
happened: the decision, the tier that answered, and every escalation on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies import Decision, NoEligibleTier, Policy, decide, load_policy
from router.errors import InvalidRequestError, NoEligibleTierError, UpstreamError
from router.messages import as_messages, check_messages, request_facts
from router.upstream import call_arguments, classify_failure, register_prices, upstream_error


@dataclass
class Routing:
    """What tierwise did for one call: the decision, who answered, and the escalations."""

    decision: Decision
    tier: str
    model: str
    escalations: list[str] = field(default_factory=list)
    coalesced: bool = False

    @property
    def escalated(self) -> bool:
        return bool(self.escalations)

    def headers(self) -> dict[str, str]:
        """The x-tierwise-* response headers (names are a contract, see DESIGN.md)."""
        return {
            "x-tierwise-tier": self.tier,
            "x-tierwise-model": self.model,
            "x-tierwise-difficulty": f"{self.decision.difficulty:.4f}",
            "x-tierwise-escalated": ",".join(self.escalations) if self.escalations else "no",
            "x-tierwise-coalesced": "yes" if self.coalesced else "no",
        }


class Router:
    """Routes OpenAI-style chat requests across the tiers of one policy."""

    def __init__(self, policy: Policy | str | Path | None = None, *, scorer: Any = None) -> None:
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self._scorer = scorer
        self._prices_registered = False

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from classifiers import default_scorer

            self._scorer = default_scorer()
        return self._scorer

    def route(self, prompt_or_messages: str | Sequence[dict[str, Any]], **fields: Any) -> Decision:
        """Decide the tier for a prompt or messages list (plus request fields); no network."""
        return self.decide({**fields, "messages": as_messages(prompt_or_messages)})

    def decide(self, body: dict[str, Any]) -> Decision:
        """Decide the tier for a full request body; a tier name as `model` pins that tier."""
        check_messages(body.get("messages"))
        model = body.get("model")
        pinned = None
        if model not in (None, self.policy.alias):
            tier = self.policy.tier_for_model(str(model))
            if tier is None:
                names = [self.policy.alias, *(t.name for t in self.policy.tiers)]
                raise InvalidRequestError(
                    f"model {model!r} is neither the router alias nor a tier; use one of {names}",
                    param="model", code="model_not_found")
            pinned = tier.name
        facts = request_facts(body, pinned)
        score = self.scorer.score(body["messages"])
        try:
            return decide(self.policy, score, facts)
        except NoEligibleTier as exc:
            raise NoEligibleTierError(f"no tier can serve this request: {exc}") from None

    def _plan(self, body: dict[str, Any]) -> tuple[Decision, list[str]]:
        decision = self.decide(body)
        budget = self.policy.max_escalations - len(decision.escalations)
        return decision, [decision.tier, *decision.fallbacks[:max(budget, 0)]]

    def _prepare(self) -> None:
        if not self._prices_registered:
            register_prices(self.policy)
            self._prices_registered = True

    async def acomplete(self, prompt_or_messages: str | Sequence[dict[str, Any]],
                        **fields: Any) -> Any:
        """Route and call through litellm (async); the response has `.tierwise`."""
        body = {**fields, "messages": as_messages(prompt_or_messages)}
        decision, plan = self._plan(body)
        self._prepare()
        from router.upstream import litellm_module

        litellm = litellm_module()
        escalations = list(decision.escalations)
        for i, name in enumerate(plan):
            tier = self.policy.tier(name)
            assert tier is not None
            try:
                response = await litellm.acompletion(**call_arguments(tier, body, self.policy))
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - classified and re-raised below
                self._escalate_or_raise(exc, plan, i, escalations)
                continue
            response.tierwise = Routing(decision, tier.name, tier.model, escalations)
            return response
        raise UpstreamError("no tier answered", attempts=escalations)

    def complete(self, prompt_or_messages: str | Sequence[dict[str, Any]], **fields: Any) -> Any:
        """Route and call through litellm (sync twin of `acomplete`)."""
        body = {**fields, "messages": as_messages(prompt_or_messages)}
        decision, plan = self._plan(body)
        self._prepare()
        from router.upstream import litellm_module

        litellm = litellm_module()
        escalations = list(decision.escalations)
        for i, name in enumerate(plan):
            tier = self.policy.tier(name)
            assert tier is not None
            try:
                response = litellm.completion(**call_arguments(tier, body, self.policy))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - classified and re-raised below
                self._escalate_or_raise(exc, plan, i, escalations)
                continue
            response.tierwise = Routing(decision, tier.name, tier.model, escalations)
            return response
        raise UpstreamError("no tier answered", attempts=escalations)

    @staticmethod
    def _escalate_or_raise(exc: Exception, plan: list[str], i: int, escalations: list[str]) -> None:
        from router.errors import TierwiseError

        if isinstance(exc, TierwiseError):
            raise exc
        retryable, status, reason = classify_failure(exc)
        if not retryable or i + 1 >= len(plan):
            raise upstream_error(exc, status, [*escalations, f"{reason}:{plan[i]}"]) from exc
        escalations.append(f"{reason}:{plan[i]}->{plan[i + 1]}")


def iter_text(stream: Any) -> Iterator[str]:
    """The text deltas of a litellm stream, for quick printing."""
    for chunk in stream:
        for choice in getattr(chunk, "choices", []) or []:
            delta = getattr(choice, "delta", None)
            if delta is not None and getattr(delta, "content", None):
                yield delta.content
