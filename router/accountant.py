"""Accounting on the request path: one RequestRecord per request, into metrics and the ledger.

`Accountant.attach(router)` makes it the Router's first listener (so its prices are in the
x-tierwise-cost-usd / -saved-usd headers before the Guard charges budgets) and a failure
listener. On the event loop it only builds the record from the Routing (tier prices from the
policy: plain arithmetic, no litellm); the ecologits estimate (~0.5 ms CPU), the Prometheus
updates and the ledger append run in one background thread, so the request does not wait for
them. `flush()` waits for that thread (the /metrics handler calls it so a scrape sees every
finished request).

Energy and CO2e are estimated for the model that answered (or the tier's `energy_model`) in the
zone of the deployment that served, else the tier's zone, else the policy's, else ecologits'
provider default.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
import weakref
from typing import Any

from policies import Policy, Tier
from router.accounting import Prices, RequestRecord, build_record
from router.energy import estimate_energy
from router.engine import Router
from router.ledger import Ledger, wait_drained
from router.metrics import Metrics
from router.routing import Routing, new_request_id

log = logging.getLogger("tierwise.accounting")

_STOP = object()


def _prices(tier: Tier) -> Prices:
    return Prices(tier.input_per_mtok, tier.output_per_mtok)


class Accountant:
    """Turns finished requests into RequestRecords for `metrics` and `ledger` (both optional)."""

    def __init__(self, policy: Policy, *, ledger: Ledger | None = None,
                 metrics: Metrics | None = None, max_queue: int = 100_000,
                 window_s: float = 0.02) -> None:
        self.policy = policy
        self.window_s = window_s
        self.ledger = ledger
        self.metrics = metrics
        self.store_prompts = policy.ledger.store_prompts
        self.dropped = 0  # records lost because the queue was full
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            accountant = ref()
            if accountant is not None:
                accountant.close()

        # registered after the ledger's own atexit hook, so it runs first (LIFO)
        atexit.register(close_at_exit)

    def attach(self, router: Router) -> Accountant:
        router.listeners.insert(0, self.on_routing)
        router.failure_listeners.append(self.on_routing)
        if self.metrics is not None:
            router.on_decision = self.metrics.observe_decision
        return self

    # -- on the event loop -------------------------------------------------------------------

    def on_routing(self, routing: Routing) -> None:
        """Router listener: record one finished (or failed) request."""
        try:
            record = self.record(routing)
        except Exception:  # accounting must not fail a request that was answered
            log.exception("could not account request %s", routing.request_id)
            return
        routing.cost_usd, routing.saved_usd = record.cost_usd, record.saved_usd
        self.submit(record, self._energy_model(routing.tier, routing.model))

    def record(self, routing: Routing) -> RequestRecord:
        """The RequestRecord of a Routing, without energy (see `submit`)."""
        from router.guard import current_key_id

        tier = self.policy.tier(routing.tier)
        if tier is None:
            raise LookupError(f"tier {routing.tier!r} is not in policy {self.policy.name!r}")
        usage = routing.usage if isinstance(routing.usage, dict) else {}
        largest = self.policy.largest
        return build_record(
            request_id=routing.request_id, tier=tier.name, model=routing.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            baseline_model=largest.model, latency_ms=routing.latency_ms or 0.0,
            prices=_prices(tier), baseline_prices=_prices(largest),
            prior_cost_usd=routing.prior_cost_usd, deployment=routing.deployment,
            zone=routing.zone or tier.zone, escalations=routing.escalations,
            coalesced=routing.coalesced, cache_hit=routing.cache_hit, stream=routing.stream,
            status=routing.status, outcome=routing.outcome, decision_ms=routing.decision_ms,
            ttft_ms=routing.ttft_ms, difficulty=routing.decision.difficulty,
            api_key_id=current_key_id(), with_energy=False,
            prompt_text=self._prompt(routing.body) if self.store_prompts else None)

    @staticmethod
    def _prompt(body: dict[str, Any] | None) -> str | None:
        """The request's messages as JSON ([ledger] store_prompts = true only)."""
        if not body or "messages" not in body:
            return None
        return json.dumps(body["messages"], ensure_ascii=False)

    def cache_hit(self, tier_name: str, usage: dict[str, Any] | None, key_id: str | None,
                  latency_ms: float, difficulty: float | None = None) -> RequestRecord | None:
        """Record an answer replayed from the response cache (router/guard.py): no call, no
        decision, cost 0, the whole baseline saved. Returns the record (None: unknown tier)."""
        tier = self.policy.tier(tier_name)
        if tier is None:
            return None
        usage = usage or {}
        largest = self.policy.largest
        record = build_record(
            request_id=new_request_id(), tier=tier.name, model=tier.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            baseline_model=largest.model, baseline_prices=_prices(largest),
            prices=_prices(tier), latency_ms=latency_ms, cache_hit=True, zone=tier.zone,
            difficulty=difficulty, api_key_id=key_id, with_energy=False)
        self.submit(record, None)
        return record

    def submit(self, record: RequestRecord, energy_model: str | None) -> None:
        """Hand a record to the background thread (energy, metrics, ledger). Never blocks."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, daemon=True,
                                                    name="tierwise-accounting")
                    self._thread.start()
        try:
            self._q.put_nowait((record, energy_model))
        except queue.Full:
            self.dropped += 1
            log.warning("accounting queue full: request %s not recorded", record.request_id)

    def _energy_model(self, tier_name: str, model: str) -> str:
        tier = self.policy.tier(tier_name)
        return (tier.energy_model if tier is not None and tier.energy_model else None) or model

    # -- in the background thread ------------------------------------------------------------

    def _work(self) -> None:
        while True:
            items = [self._q.get()]
            # Gather what arrives in the next moment: one wake-up of this thread per window
            # instead of one per request (each wake-up is a GIL hand-off with the event loop).
            time.sleep(self.window_s)
            while True:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                try:
                    if item is _STOP:
                        continue
                    self._finish(*item)
                except Exception:
                    log.exception("accounting of one request failed")
                finally:
                    self._q.task_done()
            if any(item is _STOP for item in items):
                return

    def _finish(self, record: RequestRecord, energy_model: str | None) -> None:
        paid = not (record.coalesced or record.cache_hit)
        if paid and energy_model is not None and record.completion_tokens:
            record.energy_kwh, record.co2e_g = estimate_energy(
                energy_model, None, record.completion_tokens, record.latency_ms / 1000,
                record.zone)
        if self.metrics is not None:
            self.metrics.observe(record)
        if self.ledger is not None:
            self.ledger.append(record)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted record reached metrics and the ledger's queue."""
        return wait_drained(self._q, timeout)

    def close(self) -> None:
        """Finish what is queued and stop the thread (the ledger is closed by its owner)."""
        if self._thread is not None and self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout=30)

