"""Prometheus metrics for tierwise (prometheus-client), on a registry of their own.

Every ``Metrics`` owns a ``CollectorRegistry`` (never the global one), so several apps or tests
can live in one process. ``render()`` returns the body and content type for ``GET /metrics``.
Several worker processes on one host: start them with ``PROMETHEUS_MULTIPROC_DIR`` set to an empty
directory (set in the shell, before Python starts); every worker then writes its counters there
and ``render()`` in any worker returns the sum over all of them (prometheus-client's multiprocess
mode; ``_created`` samples are not exported then). Without it each worker reports only its own.
Replicas on several hosts are scraped one by one.

| name | type | labels | meaning |
| --- | --- | --- | --- |
| `tierwise_requests_total` | counter | tier, outcome | requests finished (1) |
| `tierwise_decision_seconds` | histogram | tier | scoring + tier choice time |
| `tierwise_upstream_latency_seconds` | histogram | tier | latency to last byte |
| `tierwise_ttft_seconds` | histogram | tier | time to first token |
| `tierwise_tokens_total` | counter | tier, kind | tokens; kind = prompt, completion |
| `tierwise_cost_usd_total` | counter | tier | cost of the tier that answered (2) |
| `tierwise_baseline_cost_usd_total` | counter | tier | always-largest cost, same tokens |
| `tierwise_saved_usd_total` | counter | tier | baseline - cost, where positive |
| `tierwise_overspend_usd_total` | counter | tier | cost - baseline, where positive (3) |
| `tierwise_energy_kwh_total` | counter | tier | estimated energy (ecologits) |
| `tierwise_co2e_grams_total` | counter | tier | estimated CO2e, grams (ecologits) |
| `tierwise_escalations_total` | counter | reason, from_tier, to_tier | escalation steps |
| `tierwise_coalesced_total` | counter | tier | joined an identical in-flight call |
| `tierwise_cache_hits_total` | counter | tier | answered from the response cache |
| `tierwise_deployment_requests_total` | counter | tier, deployment, zone | serving deployment |
| `tierwise_redis_fallback_total` | counter | operation | Redis down, local fallback used |

(1) outcome: ok, upstream_error, client_error, cancelled. (2) litellm prices or the policy's
override. (3) an escalation whose earlier billed attempts cost more than the baseline; net
savings = saved - overspend = baseline - cost. Each counter also has a ``_created`` sample.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from router.accounting.records import RequestRecord


def _observe_all(child: Any, values: list[float]) -> None:
    """``child.observe(v)`` for every value: one update of the sum and one per bucket that
    gets values, instead of two locked updates per value (prometheus-client's Histogram
    internals: ``_upper_bounds`` ends with +Inf, ``_buckets`` are per-bucket counts, as
    Histogram.observe uses them). Falls back to observe() where they are missing."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            child.observe(v)
        return
    counts = [0] * len(bounds)
    last = len(bounds) - 1
    s = 0.0
    for v in values:
        s += v
        i = bisect_left(bounds, v)  # the first bound >= v: Histogram.observe's bucket
        if i <= last and v == v:  # (NaN: no bucket, as observe)
            counts[i] += 1
    total.inc(s)
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)


DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)


class Metrics:
    """All tierwise Prometheus metrics; see the module docstring for the names."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ("tier",)) -> Counter:
            return Counter(f"tierwise_{name}", doc, labels, registry=r)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(f"tierwise_{name}", doc, ("tier",), buckets=buckets, registry=r)

        self.requests = counter("requests", "Requests finished", ("tier", "outcome"))
        self.decision = histogram("decision_seconds", "Routing decision time", DECISION_BUCKETS)
        self.latency = histogram(
            "upstream_latency_seconds", "Request latency to last byte", LATENCY_BUCKETS
        )
        self.ttft = histogram("ttft_seconds", "Time to first token", LATENCY_BUCKETS)
        self.tokens = counter("tokens", "Tokens", ("tier", "kind"))
        self.cost = counter("cost_usd", "Cost of the answering tier, USD")
        self.baseline = counter("baseline_cost_usd", "Cost of the always-largest tier, USD")
        self.saved = counter("saved_usd", "Baseline minus cost, USD")
        self.overspend = counter("overspend_usd", "Cost minus baseline where positive, USD")
        self.energy = counter("energy_kwh", "Estimated energy, kWh")
        self.co2e = counter("co2e_grams", "Estimated CO2e, grams")
        self.escalations = counter(
            "escalations", "Escalation steps", ("reason", "from_tier", "to_tier")
        )
        self.coalesced = counter("coalesced", "Requests coalesced onto an in-flight call")
        self.cache_hits = counter("cache_hits", "Requests answered from the response cache")
        self.deployments = counter(
            "deployment_requests", "Requests by serving deployment", ("tier", "deployment", "zone")
        )
        self.redis_fallback = counter(
            "redis_fallback", "Redis unavailable, local fallback used", ("operation",)
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (``labels()`` builds a key and takes a
        lock on every call: ~1 us, ten times per request). Created when first needed, as
        before, so a series appears in /metrics only once it has a value."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _counts(self, r: RequestRecord) -> list[tuple[tuple[Any, ...], float]]:
        """Every counter series one finished request adds to, as ((metric, *labels), amount):
        the one place that says which series a request counts in (`observe` and
        `observe_many` both apply it)."""
        t = r.tier
        out: list[tuple[tuple[Any, ...], float]] = [
            ((self.requests, t, r.outcome), 1),
            ((self.tokens, t, "prompt"), r.prompt_tokens),
            ((self.tokens, t, "completion"), r.completion_tokens),
            ((self.cost, t), r.cost_usd),
            ((self.baseline, t), r.baseline_cost_usd),
            # counters cannot go down: a negative saving goes to the overspend counter
            ((self.saved, t), max(r.saved_usd, 0.0)),
            ((self.overspend, t), max(-r.saved_usd, 0.0)),
        ]
        if r.energy_kwh is not None:
            out.append(((self.energy, t), r.energy_kwh))
        if r.co2e_g is not None:
            out.append(((self.co2e, t), r.co2e_g))
        for step in r.escalations:
            reason, _, hop = step.partition(":")
            src, _, dst = hop.partition("->")
            out.append(((self.escalations, reason, src, dst), 1))
        if r.coalesced:
            out.append(((self.coalesced, t), 1))
        if r.cache_hit:
            out.append(((self.cache_hits, t), 1))
        if r.deployment:
            out.append(((self.deployments, t, r.deployment, r.zone or ""), 1))
        return out

    def _timings(self, r: RequestRecord) -> list[tuple[tuple[Any, str], float]]:
        """The histogram values of one finished request, as ((metric, tier), seconds)."""
        out: list[tuple[tuple[Any, str], float]] = [((self.latency, r.tier), r.latency_ms / 1000)]
        if r.ttft_ms is not None:
            out.append(((self.ttft, r.tier), r.ttft_ms / 1000))
        return out

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request (call once per ``RequestRecord``)."""
        for (metric, *labels), amount in self._counts(record):
            self._child(metric, *labels).inc(amount)
        for (metric, tier), seconds in self._timings(record):
            self._child(metric, tier).observe(seconds)

    def observe_many(self, records: Sequence[RequestRecord]) -> None:
        """Count finished requests: the same series and totals as `observe` on each, with one
        update per series for the whole batch (every update takes a lock; the accounting
        thread hands over ~20 records at a time)."""
        if len(records) < 2:
            for record in records:
                self.observe(record)
            return
        add: dict[tuple[Any, ...], float] = {}  # (metric, *labels) -> amount
        seen: dict[tuple[Any, str], list[float]] = {}  # histogram (metric, tier) -> values
        get = add.get
        for r in records:
            for k, amount in self._counts(r):
                add[k] = get(k, 0) + amount
            for h, seconds in self._timings(r):
                if h in seen:
                    seen[h].append(seconds)
                else:
                    seen[h] = [seconds]
        for (metric, *labels), total in add.items():
            self._child(metric, *labels).inc(total)
        for (metric, tier), values in seen.items():
            _observe_all(self._child(metric, tier), values)

    def observe_decision(self, seconds: float, tier: str) -> None:
        """Record the routing decision time (call on every decision, including /v1/route)."""
        self._child(self.decision, tier).observe(seconds)

    def observe_decisions(self, decisions: Sequence[tuple[float, str]]) -> None:
        """`observe_decision` for each (seconds, tier), one update per series and bucket."""
        by_tier: dict[str, list[float]] = {}
        for seconds, tier in decisions:
            if tier in by_tier:
                by_tier[tier].append(seconds)
            else:
                by_tier[tier] = [seconds]
        for tier, values in by_tier.items():
            _observe_all(self._child(self.decision, tier), values)

    def observe_redis_fallback(self, operation: str) -> None:
        """Count one fallback to local state because Redis was unavailable."""
        self.redis_fallback.labels(operation).inc()

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for ``GET /metrics`` in the Prometheus text format."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()  # the sum of every worker's files
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
