"""The /metrics body parses with prometheus-client's own parser and matches the records."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_accounting_workload import make_records

from router.accounting.metrics import Metrics
from router.accounting.records import Prices, build_record


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, ctype = metrics.render()
    assert ctype.startswith("text/plain") and "version=" in ctype
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        assert fam.name.startswith("tierwise_")
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_match_records():
    recs = make_records(250, seed=3)
    m = Metrics()
    for r in recs:
        m.observe(r)
    for t in ("small", "medium", "large"):
        m.observe_decision(0.0004, t)
    m.observe_redis_fallback("coalesce")
    m.observe_redis_fallback("coalesce")
    s = samples(m)

    by = defaultdict(float)
    for r in recs:
        by["req", r.tier, r.outcome] += 1
        by["cost", r.tier] += r.cost_usd
        by["base", r.tier] += r.baseline_cost_usd
        by["net", r.tier] += r.saved_usd
        by["co2", r.tier] += r.co2e_g or 0
        by["kwh", r.tier] += r.energy_kwh or 0
        by["pt", r.tier] += r.prompt_tokens
        by["ct", r.tier] += r.completion_tokens
        by["coal", r.tier] += r.coalesced
        by["hit", r.tier] += r.cache_hit
        by["lat_n", r.tier] += 1
        by["lat_sum", r.tier] += r.latency_ms / 1000
        for step in r.escalations:
            reason, hop = step.split(":")
            by["esc", reason, *hop.split("->")] += 1

    def get(name, **labels):
        return s.get((name, tuple(sorted(labels.items()))), 0.0)

    for key, want in by.items():
        kind, tier = key[0], key[1]
        if kind == "req":
            got = get("tierwise_requests_total", tier=tier, outcome=key[2])
        elif kind == "esc":
            got = get("tierwise_escalations_total", reason=tier, from_tier=key[2], to_tier=key[3])
        elif kind == "net":
            got = get("tierwise_saved_usd_total", tier=tier) - get(
                "tierwise_overspend_usd_total", tier=tier
            )
        elif kind in ("pt", "ct"):
            got = get(
                "tierwise_tokens_total", tier=tier, kind="prompt" if kind == "pt" else "completion"
            )
        else:
            name = {
                "cost": "tierwise_cost_usd_total",
                "base": "tierwise_baseline_cost_usd_total",
                "co2": "tierwise_co2e_grams_total",
                "kwh": "tierwise_energy_kwh_total",
                "coal": "tierwise_coalesced_total",
                "hit": "tierwise_cache_hits_total",
                "lat_n": "tierwise_upstream_latency_seconds_count",
                "lat_sum": "tierwise_upstream_latency_seconds_sum",
            }[kind]
            got = get(name, tier=tier)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), key
    assert sum(v for (n, _), v in s.items() if n == "tierwise_requests_total") == len(recs)
    ttft = [r.ttft_ms for r in recs if r.ttft_ms is not None]
    assert sum(v for (n, _), v in s.items() if n == "tierwise_ttft_seconds_count") == len(ttft)
    assert get("tierwise_decision_seconds_count", tier="small") == 1
    assert get("tierwise_decision_seconds_bucket", tier="small", le="0.0005") == 1
    assert get("tierwise_decision_seconds_bucket", tier="small", le="0.00025") == 0
    assert get("tierwise_redis_fallback_total", operation="coalesce") == 2
    dep = recs[0]
    assert (
        get(
            "tierwise_deployment_requests_total",
            tier=dep.tier,
            deployment=dep.deployment,
            zone=dep.zone,
        )
        >= 1
    )


def test_observe_many_is_observe_on_each():
    """The accounting thread's batched update: the same series, counts and (to rounding)
    sums as one observe() per record, for batches of every size."""
    recs = make_records(250, seed=5)
    one, many = Metrics(), Metrics()
    for r in recs:
        one.observe(r)
    start = 0
    for size in (1, 2, 17, 80, 150):
        many.observe_many(recs[start:start + size])
        start += size
    decisions = [(r.decision_ms / 1000, r.tier) for r in recs]
    for seconds, tier in decisions:
        one.observe_decision(seconds, tier)
    many.observe_decisions(decisions[:1])
    many.observe_decisions(decisions[1:])
    want, got = samples(one), samples(many)
    assert set(got) == set(want)
    for key, value in want.items():
        if key[0].endswith("_created"):
            continue
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_registries_are_independent():
    a, b = Metrics(), Metrics()
    a.observe(make_records(1)[0])
    assert sum(v for (n, _), v in samples(a).items() if n == "tierwise_requests_total") == 1
    assert sum(v for (n, _), v in samples(b).items() if n == "tierwise_requests_total") == 0


WORKER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from test_metrics import priced_records
from router.accounting.metrics import Metrics
m = Metrics()
for r in priced_records({n}):
    m.observe(r)
if {render}:
    sys.stdout.write(m.render()[0].decode())
"""


def priced_records(n: int) -> list:
    """Records with policy prices: no litellm import, so worker processes start fast."""
    return [
        build_record(
            request_id=str(i),
            tier="small",
            model="m",
            prompt_tokens=100 + i,
            completion_tokens=10,
            baseline_model="big",
            prices=Prices(1, 2),
            baseline_prices=Prices(10, 20),
            latency_ms=5.0,
            with_energy=False,
        )
        for i in range(n)
    ]


def test_multiprocess_mode_sums_the_workers(tmp_path):
    root = Path(__file__).parents[1]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(n: int, render: bool) -> str:
        code = WORKER.format(root=str(root), tests=str(root / "tests"), n=n, render=render)
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return out.stdout

    run(30, False)
    run(20, False)
    body = run(0, True)  # a third worker that served nothing answers the scrape
    total = cost = 0.0
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "tierwise_requests_total":
                total += s.value
            if s.name == "tierwise_cost_usd_total":
                cost += s.value
    assert total == 50
    want = sum(r.cost_usd for r in priced_records(30) + priced_records(20))
    assert cost == pytest.approx(want, rel=1e-9)
