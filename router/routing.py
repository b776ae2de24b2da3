"""What tierwise did for one request (`Routing`), the result of `Router.serve` (`Outcome`), the
listener contract, and pricing a Routing from the policy's tier prices."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from random import getrandbits as _bits
from typing import Any

from policies import Decision, Tier
from router.accounting.records import Prices, clean_usage, token_cost


def new_request_id() -> str:
    """32 random hex digits, like uuid4().hex, from the random module's generator (seeded
    from os.urandom, and again in a forked child): no UUID object and no getrandom() system
    call per request. A request id names a request; it is no secret."""
    return f"{_bits(128):032x}"


@dataclass
class Routing:
    """What tierwise did for one call: the decision, who answered, the escalations, and what
    accounting needs (ids, timings, outcome, the deployment that served)."""

    decision: Decision
    tier: str
    model: str
    escalations: list[str] = field(default_factory=list)
    coalesced: bool = False
    # A response check the final answer failed with no tier left to escalate to.
    failed_check: str | None = None
    usage: dict[str, Any] | None = None
    # Priced by the Router from the policy's tier prices before listeners run (a listener may
    # overwrite them); headers carry them when set.
    cost_usd: float | None = None
    saved_usd: float | None = None
    request_id: str = field(default_factory=new_request_id)
    stream: bool = False
    # perf_counter() when the request reached the Router; latency and TTFT count from here.
    started: float = field(default_factory=time.perf_counter)
    decision_ms: float = 0.0
    ttft_ms: float | None = None
    latency_ms: float | None = None
    # "ok", or for failure listeners "upstream_error" / "cancelled"
    # (router.accounting.records.OUTCOMES)
    outcome: str = "ok"
    status: int = 200
    deployment: str | None = None
    zone: str | None = None
    cache_hit: bool = False
    # What earlier, discarded answers on lower tiers cost (billed, then failed a response check).
    prior_cost_usd: float = 0.0
    # The request body (for the ledger's prompt text when the policy stores prompts).
    body: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def escalated(self) -> bool:
        return bool(self.escalations)

    def headers(self) -> dict[str, str]:
        """The x-tierwise-* response headers (names are a contract, see DESIGN.md)."""
        headers = {
            "x-tierwise-tier": self.tier,
            "x-tierwise-model": self.model,
            "x-tierwise-difficulty": f"{self.decision.difficulty:.4f}",
            "x-tierwise-escalated": ",".join(self.escalations) if self.escalations else "no",
            "x-tierwise-coalesced": "yes" if self.coalesced else "no",
            "x-tierwise-request-id": self.request_id,
        }
        if self.cost_usd is not None:
            headers["x-tierwise-cost-usd"] = f"{self.cost_usd:.8f}"
        if self.saved_usd is not None:
            headers["x-tierwise-saved-usd"] = f"{self.saved_usd:.8f}"
        if self.failed_check:
            headers["x-tierwise-check-failed"] = self.failed_check
        return headers


@dataclass
class Outcome:
    """The result of `Router.serve`: exactly one of `response` / `stream` is set."""

    routing: Routing
    response: dict[str, Any] | None = None
    stream: AsyncIterator[dict[str, Any]] | None = None


# Called once per answered request with its Routing (usage filled in). For non-stream requests
# listeners run before the response is returned, so a listener that sets routing.cost_usd /
# saved_usd puts them into the headers; for streams they run when the stream ends. A coalesced
# follower has routing.coalesced True: charge the upstream cost only for the leader.
# `Router.failure_listeners` get the Routing of a request that got a decision but no full answer
# (outcome "upstream_error" or "cancelled"), for the ledger; no charging happens there.
Listener = Callable[[Routing], None]


def price(routing: Routing, tier: Tier, largest: Tier) -> None:
    """Set routing.cost_usd / saved_usd from the tiers' prices and the usage (no litellm: the
    loader filled the prices from litellm's map). A coalesced follower or a cache hit made no
    call: it costs nothing and saves the whole baseline. (router.accounting.records.token_cost
    without Prices objects: the ledger's record comes out the same.)"""
    usage = routing.usage if isinstance(routing.usage, dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    free = routing.coalesced or routing.cache_hit
    cost = 0.0 if free else token_cost(prompt, completion, tier.input_per_mtok,
                                       tier.output_per_mtok)
    cost += routing.prior_cost_usd
    baseline = token_cost(prompt, completion, largest.input_per_mtok, largest.output_per_mtok)
    routing.cost_usd, routing.saved_usd = cost, baseline - cost


def tier_cost(tier: Tier, usage: Any) -> float:
    """What a call to `tier` that used `usage` (an OpenAI usage object, or None) cost."""
    usage = clean_usage(usage) or {}
    return Prices(tier.input_per_mtok, tier.output_per_mtok).cost(
        int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
