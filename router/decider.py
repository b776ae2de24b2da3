"""Decisions only: score a request and pick its tier, with no network and no asyncio.

`Decider` is the part of `router.engine.Router` that `tierwise route` / `tierwise score` and
`router.route()` need. It lives apart so that those import only policies, the scorer and this
module (not asyncio, the coalescer, the upstream clients or the accounting), which keeps the CLI
start-up short (bench/proxy/startup.py --route).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policies import Decision, NoEligibleTier, Policy, decide, load_policy
from router.errors import InvalidRequestError, NoEligibleTierError
from router.messages import as_messages, check_messages, request_facts


class Decider:
    """Scores requests and decides their tier under one policy; makes no network call."""

    def __init__(self, policy: Policy | str | Path | None = None, *, scorer: Any = None) -> None:
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        if self.policy.warnings:  # e.g. abilities that do not rise with price (policies/loader.py)
            import logging

            for warning in self.policy.warnings:
                logging.getLogger("tierwise.policy").warning("tierwise: warning: %s", warning)
        self._scorer = scorer
        # (seconds, tier) of every decision, /v1/route's included (the decision histogram)
        self.on_decision: Callable[[float, str], None] | None = None

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from classifiers import default_scorer

            self._scorer = default_scorer(self.policy.scorer)
        return self._scorer

    def route(self, prompt_or_messages: str | Sequence[dict[str, Any]], **fields: Any) -> Decision:
        """Decide the tier for a prompt or messages list (plus request fields); no network."""
        return self.decide({**fields, "messages": as_messages(prompt_or_messages)})

    async def adecide(self, body: dict[str, Any], pin: str | None = None) -> Decision:
        """`decide` for the async request paths (proxy, middleware, `Router.serve`).

        The accurate scorer spends milliseconds in onnxruntime, which releases the GIL: the
        scoring runs in a worker thread, so the event loop goes on serving other requests
        meanwhile and a second core can encode too; the rest of the decision (and its hooks)
        stays on the loop. The fast scorer's microseconds stay inline, where a thread hop
        would cost more than the work."""
        if getattr(self.scorer, "kind", "fast") == "fast":
            return self.decide(body, pin)
        import asyncio

        started = time.perf_counter()
        check_messages(body.get("messages"))  # a bad request costs no thread
        score = await asyncio.to_thread(self.scorer.score, body["messages"])
        return self._decide(body, pin, score, started)

    def decide(self, body: dict[str, Any], pin: str | None = None) -> Decision:
        """Decide the tier for a full request body. A tier name (or a tier's model) as `model`,
        or as `pin` (the x-tierwise-tier header), pins that tier."""
        started = time.perf_counter()
        check_messages(body.get("messages"))
        return self._decide(body, pin, None, started)

    def _decide(self, body: dict[str, Any], pin: str | None, score: Any,
                started: float) -> Decision:
        pinned = self._pinned(pin, "x-tierwise-tier") if pin else None
        model = body.get("model")
        if pinned is None and model not in (None, self.policy.alias):
            pinned = self._pinned(model, "model")
        facts = request_facts(body, pinned)
        if score is None:
            score = self.scorer.score(body["messages"])
        try:
            decision = decide(self.policy, score, facts)
        except NoEligibleTier as exc:
            raise NoEligibleTierError(f"no tier can serve this request: {exc}") from None
        if self.on_decision is not None:
            self.on_decision(time.perf_counter() - started, decision.tier)
        return decision

    def _pinned(self, name: Any, param: str) -> str:
        tier = self.policy.tier_for_model(str(name))
        if tier is None:
            names = [self.policy.alias, *(t.name for t in self.policy.tiers)]
            raise InvalidRequestError(
                f"{param} {name!r} is neither the router alias nor a tier; use one of {names}",
                param=param, code="model_not_found")
        return tier.name

    def plan(self, decision: Decision) -> list[str]:
        """The tiers to try in order: the chosen one, then the fallbacks the budget allows."""
        # a context-window move is forced, not chosen: it does not spend the budget
        budget = self.policy.max_escalations - sum(
            not e.startswith("context_window:") for e in decision.escalations)
        return [decision.tier, *decision.fallbacks[:max(budget, 0)]]
