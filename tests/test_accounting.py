"""call_cost against litellm, build_record semantics, ecologits energy and carbon-aware choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from router.accounting.energy import estimate_energy, pick_greenest, resolve_model, zone_intensity
from router.accounting.records import (
    Prices,
    UnknownPriceError,
    build_record,
    call_cost,
    percentile,
    summarize,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REAL_MODELS = ["gpt-4o-mini", "gpt-4o", "anthropic/claude-sonnet-4-5", "gpt-4.1-nano"]


@pytest.fixture(scope="module")
def litellm():
    import litellm

    litellm.suppress_debug_info = True
    return litellm


@pytest.mark.parametrize("model", REAL_MODELS)
def test_call_cost_matches_litellm(litellm, model):
    pt, ct = 1234, 567
    p, c = litellm.cost_per_token(model=model, prompt_tokens=pt, completion_tokens=ct)
    assert call_cost(model, pt, ct) == pytest.approx(p + c, rel=1e-12)
    resp = litellm.ModelResponse(
        model=model, usage={"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    )
    assert call_cost(model, pt, ct) == pytest.approx(
        litellm.completion_cost(completion_response=resp, model=model), rel=1e-9
    )
    assert call_cost(model, pt, ct) > 0


def test_price_override_is_used_instead_of_litellm():
    prices = Prices(input_per_mtok=0.5, output_per_mtok=2.0)
    assert call_cost("gpt-4o", 1_000_000, 500_000, prices) == pytest.approx(0.5 + 1.0)
    assert call_cost("gpt-4o", 1000, 0, prices) != call_cost("gpt-4o", 1000, 0)


def test_unknown_model_error_names_model_and_fix():
    with pytest.raises(UnknownPriceError) as e:
        call_cost("demo/tiny-model", 10, 10)
    assert "demo/tiny-model" in str(e.value) and "input_per_mtok" in str(e.value)
    assert e.value.model == "demo/tiny-model"
    assert call_cost("demo/tiny-model", 10, 10, Prices(1, 1)) == pytest.approx(20 / 1e6)


def test_build_record_cost_baseline_savings():
    r = build_record(
        request_id="r1",
        tier="small",
        model="gpt-4o-mini",
        prompt_tokens=1000,
        completion_tokens=400,
        baseline_model="gpt-4o",
        latency_ms=900.0,
        escalations=["low_confidence:small->medium"],
        zone="FRA",
    )
    assert r.cost_usd == pytest.approx(call_cost("gpt-4o-mini", 1000, 400))
    assert r.baseline_cost_usd == pytest.approx(call_cost("gpt-4o", 1000, 400))
    assert r.saved_usd == pytest.approx(r.baseline_cost_usd - r.cost_usd) and r.saved_usd > 0
    assert r.escalated is True and r.energy_kwh > 0 and r.co2e_g > 0
    h = r.headers()
    assert float(h["x-tierwise-cost-usd"]) == pytest.approx(r.cost_usd, abs=1e-8)
    assert float(h["x-tierwise-saved-usd"]) == pytest.approx(r.saved_usd, abs=1e-8)


@pytest.mark.parametrize("flag", ["coalesced", "cache_hit"])
def test_free_requests_save_the_whole_baseline(flag):
    r = build_record(
        request_id="r2",
        tier="medium",
        model="gpt-4o-mini",
        prompt_tokens=500,
        completion_tokens=100,
        baseline_model="big",
        baseline_prices=Prices(10, 30),
        latency_ms=5.0,
        **{flag: True},
    )
    assert r.cost_usd == 0 and r.energy_kwh == 0 and r.co2e_g == 0
    assert r.baseline_cost_usd == pytest.approx((500 * 10 + 100 * 30) / 1e6)
    assert r.saved_usd == r.baseline_cost_usd and not r.escalated


def test_prior_attempt_cost_counts_and_bad_outcome_rejected():
    kw = dict(
        request_id="r3",
        tier="large",
        model="x",
        prompt_tokens=100,
        completion_tokens=50,
        baseline_model="x",
        prices=Prices(1, 1),
        baseline_prices=Prices(1, 1),
        latency_ms=10.0,
    )
    r = build_record(**kw, prior_cost_usd=0.001)
    assert r.cost_usd == pytest.approx(150 / 1e6 + 0.001)
    assert r.saved_usd == pytest.approx(-0.001)  # an escalation that cost more shows as a loss
    assert r.energy_kwh is None and r.co2e_g is None  # ecologits does not know model "x"
    with pytest.raises(ValueError):
        build_record(**kw, outcome="fine")


def test_record_roundtrip():
    r = build_record(
        request_id="r4",
        tier="s",
        model="gpt-4o-mini",
        prompt_tokens=1,
        completion_tokens=1,
        baseline_model="gpt-4o",
        latency_ms=1.0,
        escalations=["upstream_error:s->m"],
    )
    assert type(r).from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_energy_known_unknown_and_zones():
    kwh, g = estimate_energy("gpt-4o-mini", None, 300, 3.0, "USA")
    assert kwh > 0 and g > 0
    _, g_fra = estimate_energy("gpt-4o-mini", None, 300, 3.0, "FRA")
    assert g_fra < g  # French grid is low-carbon
    kwh_big, _ = estimate_energy("openai/gpt-4o", None, 300, 3.0, "USA")
    assert kwh_big > kwh
    assert estimate_energy("demo/small", None, 300, 3.0, None) == (None, None)
    assert estimate_energy("gpt-4o-mini", None, 300, 3.0, "XXX") == (None, None)
    assert estimate_energy("gpt-4o-mini", None, -5, float("nan"), None) is not None  # no raise
    assert resolve_model("claude-haiku-4-5") == ("anthropic", "claude-haiku-4-5")
    assert resolve_model("hosted_vllm/meta-llama/Meta-Llama-3.1-8B-Instruct") == (
        "huggingface_hub",
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
    )


def test_energy_is_fast():
    estimate_energy("gpt-4o-mini", None, 300, 3.0, "FRA")
    t = time.perf_counter()
    for _ in range(100):
        estimate_energy("gpt-4o-mini", None, 300, 3.0, "FRA")
    assert (time.perf_counter() - t) / 100 < 0.005


def test_zone_intensity_is_ecologits_data():
    import ecologits

    data = json.loads((Path(ecologits.__file__).parent / "data/electricity_mixes.json").read_text())
    gwp = {m["name"]: m["gwp"] for m in data["electricity_mixes"]}
    assert zone_intensity("FRA") == pytest.approx(gwp["FRA"] * 1000)
    assert zone_intensity("usa") == pytest.approx(gwp["USA"] * 1000)
    assert zone_intensity("NOPE") is None and zone_intensity(None) is None
    assert zone_intensity("FRA") < zone_intensity("USA")


def test_pick_greenest():
    deps = [("us-east", "USA"), ("paris", "FRA"), ("stockholm", "SWE"), ("mars", None)]
    assert pick_greenest(deps, {"us-east", "paris", "stockholm", "mars"}, {}) in {
        "paris",
        "stockholm",
    }
    assert pick_greenest(deps, {"us-east", "paris"}, {}) == "paris"
    assert pick_greenest(deps, {"us-east", "mars"}, {}) == "us-east"  # unknown ranks last
    assert pick_greenest(deps, {"us-east", "paris"}, {"USA": 1.0}) == "us-east"  # zone override
    assert pick_greenest(deps, {"us-east", "mars"}, {"mars": 0.5}) == "mars"  # name override
    assert pick_greenest(deps, set(), {}) in {"paris", "stockholm"}  # none healthy: greenest
    with pytest.raises(ValueError):
        pick_greenest([], set(), {})


def test_percentile_and_summarize():
    assert percentile([], 0.5) is None
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3
    assert percentile(list(range(1, 101)), 0.99) == 99
    recs = [
        build_record(
            request_id=str(i),
            tier="s" if i % 2 else "l",
            model="gpt-4o-mini",
            prompt_tokens=100,
            completion_tokens=100,
            baseline_model="gpt-4o",
            latency_ms=float(i + 1),
            coalesced=i == 0,
            escalations=["a:s->l"] * (i < 3),
        )
        for i in range(10)
    ]
    s = summarize(recs)
    assert s["requests"] == 10 and s["by_tier"] == {"l": 5, "s": 5}
    assert s["escalated"] == 3 and s["escalation_rate"] == 0.3 and s["coalesced_rate"] == 0.1
    assert s["escalations_by_reason"] == {"a": 3}
    assert s["latency_ms_p50"] == 5.0 and s["latency_ms_p99"] == 10.0
    assert s["cost_usd"] == pytest.approx(sum(r.cost_usd for r in recs))
    assert s["saved_pct"] == pytest.approx(100 * s["saved_usd"] / s["baseline_cost_usd"])
    assert summarize([])["requests"] == 0


def test_importing_accounting_does_not_import_litellm_or_ecologits():
    code = (
        "import sys, router.accounting.records, router.accounting.energy, router.accounting.ledger,"
        " router.accounting.metrics;"
        "import router.accounting.report, router.accounting.dashboard;"
        "print('litellm' in sys.modules, 'ecologits' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        check=True,
    ).stdout
    assert out.split() == ["False", "False"]
