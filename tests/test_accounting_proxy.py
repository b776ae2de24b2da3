"""Issue 5, done-when: a mixed workload through a real proxy over HTTP; ledger rows, /metrics
(prometheus-client's parser), response headers and litellm's own prices must agree. Also: the
dashboard served by that proxy renders in headless Chromium, carbon-aware deployment choice,
and a ledger that survives `tierwise serve` being SIGKILLed.

The upstream here answers as gpt-4.1-nano / -mini / gpt-4.1 (models litellm prices), with token
counts that depend on the prompt so every request costs something different:
    "herd"        answers after 0.8 s (identical concurrent requests coalesce)
    "fail-small"  the nano model answers 500 (escalation to the next tier)
    "fail-all"    every model answers 500 (an error for the client)
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from guardkit import free_port, wait_ready
from prometheus_client.parser import text_string_to_metric_families
from serveproc import serve_argv
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from test_report import PANEL_TITLES, browser, chromium, visible_text  # noqa: F401 - fixture
from upstreams import start_proxy

from policies import parse_policy
from router.accounting.ledger import Ledger
from router.accounting.records import summarize
from router.accounting.report import kpis
from router.serving.app import build_app
from router.upstream.simulator import BackgroundServer

ROOT = Path(__file__).parents[1]
MODELS = {"small": "gpt-4.1-nano", "medium": "gpt-4.1-mini", "large": "gpt-4.1"}


def tokens(text: str) -> tuple[int, int]:
    """The usage the upstream reports for a prompt (deterministic, prompt-dependent)."""
    return 11 + 7 * len(text), 5 + 13 * (len(text) % 17)


async def chat(request: Request) -> Response:
    body = await request.json()
    model, text = body["model"], body["messages"][-1]["content"]
    if "fail-all" in text or ("fail-small" in text and model == MODELS["small"]):
        return JSONResponse({"error": {"message": "fails on purpose", "type": "test"}}, 500)
    if "herd" in text:
        await asyncio.sleep(0.8)
    prompt, completion = tokens(text)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion}
    answer = f"[{model}] answer to: {text}"
    head = {"id": "chatcmpl-test", "created": 1700000000, "model": model}
    if not body.get("stream"):
        return JSONResponse({**head, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer},
             "finish_reason": "stop"}]})

    async def events() -> Any:
        def event(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {json.dumps(chunk)}\n\n"

        yield event({"role": "assistant", "content": ""})
        for word in answer.split(" "):
            await asyncio.sleep(0.01)
            yield event({"content": word + " "})
        yield event({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def upstream() -> Any:
    server = BackgroundServer(Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"])])).start()
    yield server.url
    server.stop()


def policy_text(base: str, dead: str = "http://127.0.0.1:9") -> str:
    """Three tiers priced by litellm's model map (no price keys); medium has two deployments,
    and the greener one (FRA) is a dead port when `dead` is given."""
    return textwrap.dedent(f"""
        name = "accounting"
        quality_target = 0.7
        timeout_s = 10
        zone = "USA"
        carbon_aware = true
        zone_intensity = {{ SWE = 20 }}

        [[tiers]]
        name = "small"
        model = "openai/{MODELS['small']}"
        api_base = "{base}/v1"
        ability = 3.0

        [[tiers]]
        name = "medium"
        model = "openai/{MODELS['medium']}"
        ability = 4.0
        retries = 1
        deployments = [
          {{ name = "medium-us", api_base = "{base}/v1", zone = "USA" }},
          {{ name = "medium-fr", api_base = "{dead or base}/v1", zone = "FRA" }},
        ]

        [[tiers]]
        name = "large"
        model = "openai/{MODELS['large']}"
        api_base = "{base}/v1"
        ability = 5.0
        zone = "SWE"
        """)


@pytest.fixture(scope="module")
def served(upstream, tmp_path_factory) -> Any:
    policy = parse_policy(policy_text(upstream, dead=""), source="accounting.toml")
    ledger = Ledger(tmp_path_factory.mktemp("ledger") / "ledger.db")
    app = build_app(policy, ledger=ledger)
    server = start_proxy(app)
    yield server.url, app, ledger
    server.stop()
    ledger.close()


def post(base: str, text: str, *, tier: str | None = None, stream: bool = False) -> httpx.Response:
    headers = {"x-tierwise-tier": tier} if tier else {}
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "stream": stream}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)


def litellm_cost(model: str, prompt: int, completion: int) -> float:
    import litellm

    p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt,
                                  completion_tokens=completion)
    return p + c


def stream_usage(response: httpx.Response) -> dict[str, Any] | None:
    for line in response.text.splitlines():
        if line.startswith("data: {") and '"usage"' in line:
            return json.loads(line[6:])["usage"]
    return None


@pytest.fixture(scope="module")
def workload(served) -> dict[str, Any]:
    """Drive the mix once; returns the responses by kind."""
    base, _, _ = served
    out: dict[str, Any] = {"plain": [], "stream": []}
    for i in range(6):
        out["plain"].append(post(base, f"what is {i} plus {i * 3}?"))
    for tier in ("medium", "medium", "large"):
        out["plain"].append(post(base, f"explain the {tier} tier's job", tier=tier))
    for tier in (None, "medium", "large"):
        out["stream"].append(post(base, f"stream a short poem for {tier}", tier=tier,
                                  stream=True))
    with ThreadPoolExecutor(5) as pool:  # a herd: five identical requests at once
        out["herd"] = list(pool.map(lambda _: post(base, "herd: same question"), range(5)))
    out["escalated"] = post(base, "fail-small: answer me anyway")
    out["error"] = post(base, "fail-all: nobody answers")
    return out


def metric_samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def test_workload_headers_ledger_metrics_and_litellm_agree(served, workload):
    base, app, ledger = served
    assert app.accountant.flush() and ledger.flush()
    rows = {r.request_id: r for r in ledger.query()}
    sent = (len(workload["plain"]) + len(workload["stream"]) + len(workload["herd"]) + 2)
    assert len(rows) == sent  # one row per request, the failed one included

    # headers of every non-stream answer agree with its row, and with litellm's prices
    answered = [*workload["plain"], *workload["herd"], workload["escalated"]]
    for response in answered:
        assert response.status_code == 200, response.text
        row = rows[response.headers["x-tierwise-request-id"]]
        usage = response.json()["usage"]
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage["prompt_tokens"], usage["completion_tokens"])
        assert row.tier == response.headers["x-tierwise-tier"]
        assert row.coalesced == (response.headers["x-tierwise-coalesced"] == "yes")
        assert float(response.headers["x-tierwise-cost-usd"]) == pytest.approx(
            row.cost_usd, abs=1e-8)
        assert float(response.headers["x-tierwise-saved-usd"]) == pytest.approx(
            row.saved_usd, abs=1e-8)
        baseline = litellm_cost(MODELS["large"], row.prompt_tokens, row.completion_tokens)
        assert row.baseline_cost_usd == pytest.approx(baseline, rel=1e-9)
        paid = 0.0 if row.coalesced else litellm_cost(MODELS[row.tier], row.prompt_tokens,
                                                      row.completion_tokens)
        assert row.cost_usd == pytest.approx(paid, rel=1e-9, abs=1e-15)
        assert row.saved_usd == pytest.approx(baseline - paid, rel=1e-9, abs=1e-15)
        assert row.outcome == "ok" and row.status == 200 and not row.stream
        assert 0 < row.decision_ms < row.latency_ms and row.ttft_ms is None
        if not row.coalesced:
            assert row.energy_kwh > 0 and row.co2e_g > 0

    # streams: usage from the final chunk, TTFT before the end
    for response in workload["stream"]:
        row = rows[response.headers["x-tierwise-request-id"]]
        assert "x-tierwise-cost-usd" not in response.headers  # sent before the usage exists
        assert stream_usage(response) is None  # the client did not ask for usage
        assert row.stream and row.outcome == "ok"
        assert (row.prompt_tokens, row.completion_tokens) == tokens(
            f"stream a short poem for {row.tier if row.tier != 'small' else None}")
        assert row.cost_usd == pytest.approx(
            litellm_cost(MODELS[row.tier], row.prompt_tokens, row.completion_tokens), rel=1e-9)
        assert 0 < row.ttft_ms < row.latency_ms

    # the herd: one upstream call, four coalesced followers that cost nothing
    herd = [rows[r.headers["x-tierwise-request-id"]] for r in workload["herd"]]
    assert sorted(r.coalesced for r in herd) == [False, True, True, True, True]
    assert all(r.cost_usd == 0 and r.energy_kwh == 0 for r in herd if r.coalesced)

    escalated = rows[workload["escalated"].headers["x-tierwise-request-id"]]
    assert escalated.tier == "medium" and escalated.escalations == [
        "upstream_500:small->medium"]
    assert escalated.deployment == "medium-fr" and escalated.zone == "FRA"  # the greener one

    error = workload["error"]
    assert error.status_code == 502
    (failed,) = [r for r in rows.values() if r.outcome == "upstream_error"]
    assert failed.status == 502 and failed.cost_usd == 0 and failed.tier == "large"
    assert failed.escalations == ["upstream_500:small->medium", "upstream_500:medium->large"]

    # carbon-aware choice and zones reach the ledger
    for r in rows.values():
        if r.tier == "medium" and not r.coalesced and r.outcome == "ok":
            assert (r.deployment, r.zone) == ("medium-fr", "FRA")
        if r.tier == "large":
            assert r.zone == "SWE"
    # a large answer in SWE emits less per kWh than a small one in the USA (ecologits' mixes)
    large = next(r for r in rows.values() if r.tier == "large" and r.energy_kwh)
    small = next(r for r in rows.values() if r.tier == "small" and r.energy_kwh)
    assert large.co2e_g / large.energy_kwh < small.co2e_g / small.energy_kwh

    # /metrics agrees with the ledger
    samples = metric_samples(base)
    records = list(rows.values())
    assert total(samples, "tierwise_requests_total") == len(records)
    assert total(samples, "tierwise_requests_total", outcome="upstream_error") == 1
    assert total(samples, "tierwise_decision_seconds_count") == len(records)
    assert total(samples, "tierwise_ttft_seconds_count") == len(workload["stream"])
    assert total(samples, "tierwise_coalesced_total") == 4
    assert total(samples, "tierwise_escalations_total", reason="upstream_500") == 3
    assert total(samples, "tierwise_deployment_requests_total", deployment="medium-fr",
                 zone="FRA") == sum(1 for r in records if r.deployment == "medium-fr")
    for tier in MODELS:
        mine = [r for r in records if r.tier == tier]
        for name, attr in (("tierwise_cost_usd_total", "cost_usd"),
                           ("tierwise_baseline_cost_usd_total", "baseline_cost_usd"),
                           ("tierwise_energy_kwh_total", "energy_kwh"),
                           ("tierwise_co2e_grams_total", "co2e_g")):
            assert total(samples, name, tier=tier) == pytest.approx(
                sum(getattr(r, attr) or 0 for r in mine), rel=1e-9, abs=1e-15), (name, tier)
        assert total(samples, "tierwise_tokens_total", tier=tier, kind="completion") == sum(
            r.completion_tokens for r in mine)
    s = ledger.summary()
    assert s["saved_usd"] == pytest.approx(total(samples, "tierwise_saved_usd_total") - total(
        samples, "tierwise_overspend_usd_total"), rel=1e-9)
    local = summarize(records)
    for key in ("requests", "coalesced", "escalated", "prompt_tokens", "completion_tokens"):
        assert s[key] == local[key], key
    for key in ("cost_usd", "baseline_cost_usd", "co2e_g", "energy_kwh"):
        assert s[key] == pytest.approx(local[key], rel=1e-9), key


def test_route_decisions_are_observed(served):
    base, _, _ = served
    before = total(metric_samples(base), "tierwise_decision_seconds_count")
    body = {"model": "auto", "messages": [{"role": "user", "content": "decide only"}]}
    assert httpx.post(f"{base}/v1/route", json=body).status_code == 200
    assert total(metric_samples(base), "tierwise_decision_seconds_count") == before + 1


def test_cache_hit_is_recorded(upstream, tmp_path):
    text = policy_text(upstream, dead="") + "\n[cache]\nenabled = true\n"
    policy = parse_policy(text.replace('zone_intensity = { SWE = 20 }', ""), source="c.toml")
    ledger = Ledger(tmp_path / "ledger.db")
    app = build_app(policy, ledger=ledger)
    server = start_proxy(app)
    try:
        first, again = (post(server.url, "cache me") for _ in range(2))
    finally:
        server.stop()
    assert again.headers["x-tierwise-cache"] == "hit"
    app.accountant.flush()
    rows = {r.request_id: r for r in ledger.query()}
    hit = rows[again.headers["x-tierwise-request-id"]]
    assert hit.cache_hit and hit.cost_usd == 0 and hit.tier == first.headers["x-tierwise-tier"]
    assert float(again.headers["x-tierwise-saved-usd"]) == pytest.approx(hit.saved_usd, abs=1e-8)
    assert hit.saved_usd == pytest.approx(rows[first.headers["x-tierwise-request-id"]]
                                          .baseline_cost_usd)
    ledger.close()


def test_carbon_aware_fails_over_to_the_next_greenest(upstream, tmp_path):
    policy = parse_policy(policy_text(upstream), source="dead.toml")  # medium-fr is dead
    ledger = Ledger(tmp_path / "ledger.db")
    app = build_app(policy, ledger=ledger)
    server = start_proxy(app)
    try:
        answers = [post(server.url, f"medium please {i}", tier="medium") for i in range(3)]
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * 3
    app.accountant.flush()
    assert Counter(r.deployment for r in ledger.query()) == {"medium-us": 3}
    ledger.close()


def test_stream_left_by_the_client_is_recorded_cancelled(served):
    base, app, ledger = served
    body = {"model": "auto", "stream": True,
            "messages": [{"role": "user", "content": "a long stream " + "word " * 400}]}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
        rid = r.headers["x-tierwise-request-id"]
        next(r.iter_lines())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        app.accountant.flush()
        found = [x for x in ledger.query() if x.request_id == rid]
        if found:
            break
        time.sleep(0.1)
    assert found and found[0].outcome == "cancelled" and found[0].status == 499


def test_dashboard_of_the_real_proxy_in_chromium(browser, served, workload, tmp_path):  # noqa: F811
    base, app, ledger = served
    app.accountant.flush()
    url = f"{base}/dashboard"
    dom, urls = chromium(browser, "--dump-dom", "--virtual-time-budget=4000", url)
    assert all(u.startswith(base + "/") for u in urls), urls
    text = visible_text(dom)
    for title in PANEL_TITLES:
        assert title in text
    s = summarize(ledger.query(time.time() - 86400))
    for key in ("requests", "cost", "saved"):
        assert kpis(s)[key][1] in text, key
    assert dom.count("<svg") == 6


def test_sdk_response_carries_cost(upstream):
    from router.engine import Router

    router = Router(parse_policy(policy_text(upstream, dead=""), source="sdk.toml"))

    async def go() -> Any:
        try:
            return await router.acomplete("what does the sdk cost?")
        finally:
            from router.upstream.passthrough import close_default_client

            await close_default_client()

    response = asyncio.run(go())
    routing = response.tierwise
    prompt, completion = tokens("what does the sdk cost?")
    assert routing.cost_usd == pytest.approx(litellm_cost(MODELS[routing.tier], prompt,
                                                          completion), rel=1e-9)
    assert routing.saved_usd == pytest.approx(
        litellm_cost(MODELS["large"], prompt, completion) - routing.cost_usd, rel=1e-9)


@pytest.mark.serve_process
def test_ledger_survives_a_killed_serve(tmp_path):
    """SIGKILL `tierwise serve` (embedded demo): the rows committed before are all readable."""
    port = free_port()
    path = tmp_path / "ledger.db"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        serve_argv("--port", str(port), "--log-level", "warning", "--ledger", str(path)),
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]
        ids = [post(base, f"survive {i}").headers["x-tierwise-request-id"] for i in range(8)]
        deadline = time.monotonic() + 10  # wait for the writer thread to commit them
        while True:
            with sqlite3.connect(path) as conn:
                n = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            if n == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert n == len(ids)
        assert (tmp_path / "ledger.db-wal").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = Ledger(path).query()
    assert sorted(r.request_id for r in rows) == sorted(ids)
    assert all(r.outcome == "ok" and r.energy_kwh and r.energy_kwh > 0 for r in rows)
    assert not math.isnan(sum(r.cost_usd for r in rows))
    assert not (tmp_path / "tierwise-ledger.db").exists()  # --ledger wins over the policy's


def test_litellm_router_deployment_is_recorded(upstream, tmp_path):
    """Without carbon_aware, litellm.Router balances the deployments; the ledger still names
    the one that served (litellm's model_id is the deployment name)."""
    text = policy_text(upstream, dead="").replace("carbon_aware = true", "carbon_aware = false")
    ledger = Ledger(tmp_path / "ledger.db")
    app = build_app(parse_policy(text, source="lr.toml"), ledger=ledger)
    server = start_proxy(app)
    try:
        answers = [post(server.url, f"balanced {i}", tier="medium", stream=i % 2 == 1)
                   for i in range(4)]
    finally:
        server.stop()
    assert all(a.status_code == 200 for a in answers)
    app.accountant.flush()
    rows = ledger.query()
    assert len(rows) == 4
    assert {r.deployment for r in rows} <= {"medium-us", "medium-fr"}
    assert all(r.zone == {"medium-us": "USA", "medium-fr": "FRA"}[r.deployment] for r in rows)
    ledger.close()


def test_ledger_names_the_key_id_never_the_key(upstream, tmp_path):
    import hashlib

    secret = "sk-accounting-test-0123456789"
    auth = ('\n[[auth.keys]]\nid = "team-a"\nadmin = true\n'  # admin: may read /dashboard
            f'sha256 = "{hashlib.sha256(secret.encode()).hexdigest()}"\n')
    ledger = Ledger(tmp_path / "ledger.db", store_prompts=False)
    app = build_app(parse_policy(policy_text(upstream, dead="") + auth, source="auth.toml"),
                    ledger=ledger)
    server = start_proxy(app)
    try:
        body = {"model": "auto", "messages": [{"role": "user", "content": "who am i"}]}
        ok = httpx.post(f"{server.url}/v1/chat/completions", json=body,
                        headers={"authorization": f"Bearer {secret}"}, timeout=30)
        assert httpx.get(f"{server.url}/metrics").status_code == 200  # open for Prometheus
        assert httpx.get(f"{server.url}/dashboard").status_code == 401  # needs a key
        assert httpx.get(f"{server.url}/dashboard", headers={
            "authorization": f"Bearer {secret}"}).status_code == 200
    finally:
        server.stop()
    assert ok.status_code == 200
    app.accountant.flush()
    (row,) = ledger.query()
    assert row.api_key_id == "team-a" and row.prompt_text is None
    ledger.close()
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("ledger.db*"))  # WAL too, if left
    assert secret.encode() not in raw and b"who am i" not in raw
