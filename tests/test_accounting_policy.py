"""Policy keys of issue 5 (zones, carbon_aware, zone_intensity, deployment names, ledger path)
and the accountant's record of a Routing (prompt storage, zone fallback, energy model)."""

from __future__ import annotations

import math
import textwrap

import pytest

from policies import PolicyError, parse_policy
from router.accounting.energy import carbon_intensity, rank_greenest
from router.engine import Router, Routing
from router.serving.accountant import Accountant

TIERS = textwrap.dedent("""
    [[tiers]]
    name = "small"
    model = "openai/gpt-4.1-nano"
    ability = 1.0
    energy_model = "gpt-4o-mini"

    [[tiers]]
    name = "large"
    model = "openai/gpt-4.1"
    ability = 2.0
    zone = "SWE"
    deployments = [{ zone = "FRA" }, { name = "b", api_base = "http://127.0.0.1:9/v1" }]
    """)


def policy(head: str = "", tiers: str = TIERS):
    return parse_policy(head + tiers, source="p.toml")


def test_zones_inherit_policy_tier_deployment():
    p = policy('zone = "USA"\ncarbon_aware = true\nzone_intensity = { FRA = 10, b = 5 }\n')
    small, large = p.tiers
    assert (small.zone, large.zone) == ("USA", "SWE")
    assert [(d.name, d.zone) for d in large.deployments] == [("large-0", "FRA"), ("b", "SWE")]
    assert p.carbon_aware and p.zone_intensity == {"FRA": 10.0, "b": 5.0}
    assert policy().zone is None and not policy().carbon_aware


@pytest.mark.parametrize(("head", "key"), [
    ('zone = "France!"\n', "zone"),
    ("zone_intensity = { FRA = -1 }\n", "zone_intensity"),
    ('zone_intensity = { FRA = "low" }\n', "zone_intensity"),
    ("carbon_aware = 1\n", "carbon_aware"),
])
def test_bad_keys_are_named(head, key):
    with pytest.raises(PolicyError) as info:
        policy(head)
    assert key in str(info.value)


def test_duplicate_deployment_names():
    tiers = TIERS.replace('{ zone = "FRA" }', '{ name = "b" }')
    with pytest.raises(PolicyError, match="duplicate deployment name 'b'"):
        policy(tiers=tiers)


def test_ledger_path_may_be_empty():
    assert policy().ledger.path == "tierwise-ledger.db"
    p = parse_policy(TIERS + '\n[ledger]\npath = ""\n', source="p.toml")
    assert p.ledger.path == ""


def test_rank_greenest_prefers_healthy_then_intensity():
    deployments = [("us", "USA"), ("fr", "FRA"), ("se", "SWE"), ("x", "XXX")]
    everyone = {d for d, _ in deployments}
    assert rank_greenest(deployments, everyone) == ["se", "fr", "us", "x"]
    assert rank_greenest(deployments, everyone - {"se"}) == ["fr", "us", "x", "se"]
    assert rank_greenest(deployments, everyone, {"us": 1.0}) == ["us", "se", "fr", "x"]
    assert rank_greenest(deployments, everyone, {"FRA": 1.0})[0] == "fr"
    assert carbon_intensity("x", "XXX") == math.inf


@pytest.mark.parametrize("store", [False, True])
def test_record_of_a_routing(store):
    ledger = f"\n[ledger]\nstore_prompts = {str(store).lower()}\n"
    p = policy('zone = "USA"\n', tiers=TIERS + ledger)
    router = Router(p)
    decision = router.route("hello there")
    body = {"messages": [{"role": "user", "content": "hello there"}]}
    routing = Routing(decision, "small", "openai/gpt-4.1-nano", [], body=body, latency_ms=900.0,
                      decision_ms=0.5)
    routing.usage = {"prompt_tokens": 100, "completion_tokens": 50}
    accountant = Accountant(p)
    record = accountant.record(routing)
    assert record.zone == "USA" and record.api_key_id is None
    assert (record.prompt_text is not None) == store
    assert record.cost_usd == pytest.approx((100 * 0.1 + 50 * 0.4) / 1e6)
    assert record.baseline_cost_usd == pytest.approx((100 * 2 + 50 * 8) / 1e6)
    assert record.energy_kwh is None  # estimated later, in the accounting thread
    assert accountant._energy_model("small", "openai/gpt-4.1-nano") == "gpt-4o-mini"
    accountant._finish(record, "gpt-4o-mini")
    assert record.energy_kwh > 0 and record.co2e_g > 0


def test_cached_ecologits_order_gives_identical_estimates():
    from ecologits.impacts import llm

    from router.accounting.energy import _eco, estimate_energy

    _eco()
    cases = [("gpt-4o-mini", 100, 1.0, "USA"), ("gpt-4o", 1000, 30.0, "FRA"),
             ("gpt-4.1-nano", 7, 0.05, None), ("gpt-4o-mini", 400, 3.0, "SWE")]
    fast = [estimate_energy(m, None, t, lat, z) for m, t, lat, z in cases]
    assert "execute" in vars(llm.dag)  # the cached order is in use
    patched = llm.dag.execute
    del llm.dag.execute  # ecologits' own DAG.execute
    try:
        slow = [estimate_energy(m, None, t, lat, z) for m, t, lat, z in cases]
    finally:
        llm.dag.execute = patched
    assert fast == slow and all(k and k > 0 for k, _ in fast)


def test_estimates_equal_ecologits_llm_impacts():
    """router.accounting.energy computes what ecologits' public llm_impacts() does (same DAG, same
    min/max combination) without its pydantic result objects: identical values, unknown zones
    too."""
    import random

    from router.accounting.energy import _eco, _mid, estimate_energy, resolve_model

    utils = _eco()[0]
    rnd = random.Random(7)
    checked = 0
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "o3-mini",
                  "meta-llama/Meta-Llama-3.1-70B-Instruct", "mistral-large-latest"):
        key = resolve_model(model)
        if key is None:
            continue
        for zone in (None, "USA", "FRA", "WOR", "NOWHERE"):
            for tokens, latency in [(0, 0.0), (1, 0.001), (400, 3.0), (4000, 30.0),
                                    (rnd.randint(0, 5000), rnd.random() * 60)]:
                out = utils.llm_impacts(provider=key[0], model_name=key[1],
                                        output_token_count=tokens,
                                        request_latency=max(latency, 1e-3),
                                        electricity_mix_zone=zone)
                expected = ((None, None) if out.errors else
                            (_mid(out.energy.value), _mid(out.gwp.value) * 1000.0))
                assert estimate_energy(model, None, tokens, latency, zone) == expected
                checked += 1
    assert checked >= 60
