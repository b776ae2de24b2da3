"""Synthetic but realistic workload for the accounting tests (real litellm prices, ecologits).

Imported by the ledger, metrics and report tests; its own test checks the mix is what they expect.
"""

from __future__ import annotations

import random

from router.accounting.records import RequestRecord, build_record

TIERS = [("small", "gpt-4.1-nano"), ("medium", "gpt-4.1-mini"), ("large", "gpt-4.1")]
BASELINE = TIERS[-1][1]
REASONS = ["low_confidence", "upstream_error", "response_check"]


def make_records(
    n: int = 300, *, seed: int = 7, end: float = 1_790_000_000.0, span_s: float = 6 * 3600
) -> list[RequestRecord]:
    """``n`` records spread over ``span_s`` seconds before ``end``, oldest first."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = end - span_s + span_s * (i + rng.random()) / n
        k = rng.choices(range(3), weights=[6, 3, 1])[0]
        escalations = []
        if k > 0 and rng.random() < 0.25:
            reason = rng.choice(REASONS)
            escalations.append(f"{reason}:{TIERS[k - 1][0]}->{TIERS[k][0]}")
        coalesced = rng.random() < 0.08
        cache_hit = not coalesced and rng.random() < 0.05
        outcome = rng.choices(
            ["ok", "upstream_error", "client_error", "cancelled"], weights=[94, 3, 2, 1]
        )[0]
        pt = rng.randint(20, 3000)
        ct = rng.randint(5, 900) if outcome == "ok" else 0
        latency = 150 + ct * (4 + 8 * k) * rng.uniform(0.7, 1.3)
        out.append(
            build_record(
                request_id=f"req-{seed}-{i}",
                ts=ts,
                tier=TIERS[k][0],
                model=TIERS[k][1],
                prompt_tokens=pt,
                completion_tokens=ct,
                baseline_model=BASELINE,
                latency_ms=latency,
                ttft_ms=latency * 0.2 if rng.random() < 0.5 else None,
                decision_ms=rng.uniform(0.2, 1.5),
                escalations=escalations,
                coalesced=coalesced,
                cache_hit=cache_hit,
                stream=rng.random() < 0.5,
                status={"ok": 200, "upstream_error": 502, "client_error": 400, "cancelled": 499}[
                    outcome
                ],
                outcome=outcome,
                difficulty=rng.uniform(-3, 3),
                deployment=f"{TIERS[k][0]}-{rng.choice(['us', 'fr'])}",
                api_key_id="key-a",
                zone=rng.choice(["USA", "FRA"]),
                prompt_text=f"prompt number {i}",
            )
        )
    return out


def test_workload_has_every_kind_of_row():
    recs = make_records(400)
    assert {r.tier for r in recs} == {"small", "medium", "large"}
    assert any(r.escalated for r in recs) and any(r.coalesced for r in recs)
    assert any(r.cache_hit for r in recs) and any(r.outcome != "ok" for r in recs)
    assert all(r.co2e_g is not None and r.co2e_g >= 0 for r in recs)
    assert recs == sorted(recs, key=lambda r: r.ts)
