"""Accounting on the request path: one RequestRecord per request, into metrics and the ledger.

`Accountant.attach(router)` makes it a Router listener and failure listener, and takes the
Router's decision-time hook. The Router has priced the Routing from the policy's tier prices
before any listener runs (router.routing.price: the x-tierwise-cost-usd / -saved-usd headers
and the Guard's budget charge use that), so on the event loop the accountant only hands the
Routing, the caller's key id and the time to one background thread: one deque append per
request, no lock, no object built. That thread builds the RequestRecord (the same arithmetic,
router.accounting.records.build_record), estimates energy and CO2e (ecologits, ~0.1-0.5 ms for a
known model), updates the Prometheus metrics and passes the batch to the ledger. It gathers what
arrives within `window_s` (20 ms) and works it off in one go: one wake-up of the thread (one
GIL hand-off with the event loop) per window, not per request. A Routing is not changed after
its listeners ran, so reading it a little later is safe. `flush()` waits for what was handed
over before it (the /metrics handler calls it so a scrape sees every finished request).

Energy and CO2e are estimated for the model that answered (or the tier's `energy_model`) in the
zone of the deployment that served, else the tier's zone, else the policy's, else ecologits'
provider default.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from policies import Policy, Tier
from router.accounting.energy import estimate_energy
from router.accounting.gil import Yielder
from router.accounting.metrics import Metrics
from router.accounting.records import Prices, RequestRecord, build_record
from router.engine import Router
from router.routing import Routing, new_request_id

if TYPE_CHECKING:
    from router.accounting.ledger import Ledger

log = logging.getLogger("tierwise.accounting")

# Kinds of work items (the first element of each tuple in the queue)
_ROUTING, _RECORD, _DECISION, _MARK, _STOP = range(5)
_UNSET: Any = object()


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
        # per tier name: the tier and its prices (the policy does not change under us)
        self._tiers = {t.name: (t, _prices(t)) for t in policy.tiers}
        self._largest = policy.largest
        self._largest_prices = _prices(policy.largest)
        self.max_queue = max_queue
        self.dropped = 0  # records lost because the queue was full
        # deque.append/popleft are atomic: the event loop appends, the thread pops
        self._items: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._idle = True  # the thread waits for _wake (set it when adding work)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._yielder = Yielder()
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
            router.on_decision = self.on_decision
        return self

    # -- on the event loop -------------------------------------------------------------------

    def on_routing(self, routing: Routing) -> None:
        """Router listener: record one finished (or failed) request (in the thread)."""
        from router.serving.guard import current_key_id

        self._put((_ROUTING, routing, current_key_id(), time.time()))

    def on_decision(self, seconds: float, tier: str) -> None:
        """Router hook: the decision-time histogram (observed in the thread)."""
        self._put((_DECISION, seconds, tier))

    def record(self, routing: Routing, key_id: str | None = _UNSET,
               ts: float | None = None) -> RequestRecord:
        """The RequestRecord of a Routing, without energy (see `_finish`). `key_id` defaults
        to the API key of the request being served (router.serving.guard.current_key_id)."""
        if key_id is _UNSET:
            from router.serving.guard import current_key_id

            key_id = current_key_id()
        found = self._tiers.get(routing.tier)
        if found is None:
            raise LookupError(f"tier {routing.tier!r} is not in policy {self.policy.name!r}")
        tier, prices = found
        usage = routing.usage if isinstance(routing.usage, dict) else {}
        return build_record(
            request_id=routing.request_id, tier=tier.name, model=routing.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            baseline_model=self._largest.model, latency_ms=routing.latency_ms or 0.0,
            prices=prices, baseline_prices=self._largest_prices,
            prior_cost_usd=routing.prior_cost_usd, deployment=routing.deployment,
            zone=routing.zone or tier.zone, escalations=routing.escalations,
            coalesced=routing.coalesced, cache_hit=routing.cache_hit, stream=routing.stream,
            status=routing.status, outcome=routing.outcome, decision_ms=routing.decision_ms,
            ttft_ms=routing.ttft_ms, difficulty=routing.decision.difficulty,
            api_key_id=key_id, with_energy=False, ts=ts,
            prompt_text=self._prompt(routing.body) if self.store_prompts else None)

    @staticmethod
    def _prompt(body: dict[str, Any] | None) -> str | None:
        """The request's messages as JSON ([ledger] store_prompts = true only)."""
        if not body or "messages" not in body:
            return None
        return json.dumps(body["messages"], ensure_ascii=False)

    def cache_hit(self, tier_name: str, usage: dict[str, Any] | None, key_id: str | None,
                  latency_ms: float, difficulty: float | None = None) -> RequestRecord | None:
        """Record an answer replayed from the response cache (router/serving/guard.py): no call, no
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
        """Hand a finished record to the background thread (energy, metrics, ledger)."""
        self._put((_RECORD, record, energy_model))

    def _put(self, item: tuple[Any, ...]) -> None:
        """Queue work for the thread. Never blocks; drops (and counts) beyond `max_queue`."""
        if self._thread is None:
            self._start()
        if len(self._items) >= self.max_queue:
            self.dropped += 1
            log.warning("accounting queue full: a request was not recorded")
            return
        self._items.append(item)
        if self._idle:  # (the thread sets _idle before its last look at the queue)
            self._idle = False
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name="tierwise-accounting")
                thread.start()
                self._thread = thread

    def _energy_model(self, tier_name: str, model: str) -> str:
        found = self._tiers.get(tier_name)
        return (found[0].energy_model if found is not None else None) or model

    # -- in the background thread ------------------------------------------------------------

    def _work(self) -> None:
        items = self._items
        while True:
            self._wake.wait()
            self._wake.clear()
            # Gather what arrives in the next moment: one wake-up of this thread per window
            # instead of one per request (each wake-up is a GIL hand-off with the event loop).
            time.sleep(self.window_s)
            while True:
                batch = []
                while items:
                    batch.append(items.popleft())
                if batch and self._run(batch):
                    return
                self._idle = True
                if not items:
                    break
                self._idle = False  # work came in before the flag was up: go on

    def _run(self, batch: list[tuple[Any, ...]]) -> bool:
        """Work off one batch; True when it holds the stop mark."""
        records: list[RequestRecord] = []
        decisions: list[tuple[float, str]] = []
        marks: list[threading.Event] = []
        stop = False
        # a batch held the GIL for 0.4-2 ms in one stretch: let a waiting event loop in
        yielder = self._yielder
        yielder.start()
        for item in batch:
            yielder.tick()
            kind = item[0]
            try:
                if kind == _ROUTING:
                    routing = item[1]
                    record = self.record(routing, item[2], item[3])
                    self._estimate(record, self._energy_model(routing.tier, routing.model))
                    records.append(record)
                elif kind == _RECORD:
                    self._estimate(item[1], item[2])
                    records.append(item[1])
                elif kind == _DECISION:
                    decisions.append((item[1], item[2]))
                elif kind == _MARK:
                    marks.append(item[1])
                else:
                    stop = True
            except Exception:
                log.exception("accounting of one request failed")
        if self.metrics is not None and (records or decisions):
            try:
                self.metrics.observe_decisions(decisions)
                self.metrics.observe_many(records)
            except Exception:
                log.exception("%d requests did not reach the metrics", len(records))
        if records and self.ledger is not None:
            try:
                self.ledger.extend(records)
            except Exception:  # e.g. closed already at shutdown
                log.exception("%d requests did not reach the ledger", len(records))
        for mark in marks:
            mark.set()
        return stop

    @staticmethod
    def _estimate(record: RequestRecord, energy_model: str | None) -> None:
        """Energy and CO2e of a record (ecologits), for a request that made its call."""
        paid = not (record.coalesced or record.cache_hit)
        if paid and energy_model is not None and record.completion_tokens:
            record.energy_kwh, record.co2e_g = estimate_energy(
                energy_model, None, record.completion_tokens, record.latency_ms / 1000,
                record.zone)

    def _finish(self, record: RequestRecord, energy_model: str | None) -> None:
        """Energy, metrics and the ledger for one record (what the thread does per batch)."""
        self._estimate(record, energy_model)
        if self.metrics is not None:
            self.metrics.observe(record)
        if self.ledger is not None:
            self.ledger.append(record)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything handed over before this call reached metrics and the
        ledger's queue; False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return not self._items
        mark = threading.Event()
        self._put((_MARK, mark))
        return mark.wait(timeout)

    def close(self) -> None:
        """Finish what is queued and stop the thread (the ledger is closed by its owner)."""
        if self._thread is not None and self._thread.is_alive():
            self._items.append((_STOP,))
            self._idle = False
            self._wake.set()
            self._thread.join(timeout=30)
            # a later request (the app served again after a lifespan shutdown) starts a new one
            self._thread = None
