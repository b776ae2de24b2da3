"""Issue 15: money and cache integrity at the real proxy (router.serving.app.build_app) over
loopback HTTP, with a scripted OpenAI-shaped upstream, a real ledger and /metrics.

The upstream's behaviour is chosen by a word in the last user message:
    pause-usage  streams the answer and its finish_reason, waits 0.5 s, then usage and [DONE]
    pause-long   the same with a 3 s wait
    slow         first byte after 0.8 s (identical requests in flight meanwhile coalesce)
    drip         30 content chunks 50 ms apart (a client can leave half-way)
    breaks       two content chunks, then the connection drops (a failure after the first byte)
    refuse       "I'm sorry, but I can't help with that." (fails the refusal check)
    usage-str / usage-nan / usage-huge   a usage whose counts are a string, NaN or 1e30
    auth401      the provider refuses tierwise's key: 401
Every other prompt is answered at once. Usage is always 10 prompt + 20 completion tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import require_binary
from guardkit import LengthScorer, chat, serve
from prometheus_client.parser import text_string_to_metric_families
from redisproc import RedisServer
from serveproc import serve_argv, workers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from test_limits_proxy import start_of_a_window

from policies import parse_policy
from router.access.auth import hash_key
from router.accounting.ledger import Ledger
from router.accounting.records import RequestRecord
from router.serving.app import build_app
from router.upstream.simulator import BackgroundServer

KEYS = {"a": "sk-integrity-a-0123456789", "b": "sk-integrity-b-0123456789"}
PROVIDER_KEY = "sk-provider-secret-0123456789"
USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
# the small tier's prices (USD per 1M tokens) and what one answer with USAGE costs there
IN_PRICE, OUT_PRICE = 1000.0, 2000.0
CALL_COST = (10 * IN_PRICE + 20 * OUT_PRICE) / 1e6
ANSWER = "one two three four five six seven eight"


class Scripted:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        import asyncio

        body = await request.json()
        text = body["messages"][-1]["content"]
        with self.lock:
            self.hits[text] += 1
        if "auth401" in text:
            return Response(json.dumps({"error": {
                "message": "Incorrect API key provided: sk-pro***6789", "type":
                "invalid_request_error", "param": None, "code": "invalid_api_key"}}), 401,
                media_type="application/json")
        answer = "I'm sorry, but I can't help with that." if "refuse" in text else ANSWER
        usage: Any = USAGE
        raw_usage = json.dumps(USAGE)
        if "usage-str" in text:
            raw_usage = '{"prompt_tokens": "ten", "completion_tokens": "20", "total_tokens": 3}'
        elif "usage-nan" in text:
            raw_usage = '{"prompt_tokens": NaN, "completion_tokens": NaN, "total_tokens": NaN}'
        elif "usage-huge" in text:
            raw_usage = '{"prompt_tokens": 1e30, "completion_tokens": 1e30, "total_tokens": 2e30}'
        if "slow" in text:
            await asyncio.sleep(0.8)
        head = {"id": "chatcmpl-s", "created": 1700000000, "model": body["model"]}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": answer},
                      "finish_reason": "stop"}
            raw = json.dumps({**head, "object": "chat.completion", "choices": [choice],
                              "usage": "USAGE"}).replace('"USAGE"', raw_usage)
            return Response(raw, media_type="application/json")
        del usage

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {json.dumps(chunk)}\n\n".encode()

        async def events() -> Any:
            yield event({"role": "assistant", "content": ""})
            words = answer.split(" ")
            if "drip" in text:
                words = [f"w{i}" for i in range(30)]
            for i, word in enumerate(words):
                if "breaks" in text and i == 2:
                    raise ConnectionResetError("breaks on purpose")
                yield event({"content": word + " "})
                await asyncio.sleep(0.05 if "drip" in text else 0.005)
            yield event({}, "stop")
            if "pause-usage" in text:
                await asyncio.sleep(0.5)
            if "pause-long" in text:
                await asyncio.sleep(3.0)  # longer than the proxy waits for a usage
            if (body.get("stream_options") or {}).get("include_usage"):
                usage_event = json.dumps({**head, "object": "chat.completion.chunk",
                                          "choices": [], "usage": "USAGE"})
                yield f"data: {usage_event}\n\n".replace('"USAGE"', raw_usage).encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    upstream = Scripted()
    server = BackgroundServer(upstream.app).start()
    upstream.url = server.url  # type: ignore[attr-defined]
    yield upstream
    server.stop()


def policy_text(base: str, extra: str = "", head: str = "",
                budget: str = "usd_per_day = 1000.0\n") -> str:
    auth = "".join(f'[[auth.keys]]\nid = "{i}"\nsha256 = "{hash_key(k)}"\n'
                   for i, k in KEYS.items())
    tiers = ""
    for i, name in enumerate(("small", "large")):
        tiers += (f'[[tiers]]\nname = "{name}"\nmodel = "openai/scripted-{name}"\n'
                  f'api_base = "{base}/v1"\nability = {1.0 + i}\n'
                  f'input_per_mtok = {IN_PRICE * (i + 1)}\n'
                  f'output_per_mtok = {OUT_PRICE * (i + 1)}\n'
                  'context_window = 100000\n')
    return (f'name = "integrity"\nalias = "auto"\ntimeout_s = 10\nmax_escalations = 1\n{head}\n'
            f"{tiers}{auth}[limits]\n{budget}{extra}")


@contextmanager
def proxy(scripted: Scripted, tmp_path: Path, extra: str = "", head: str = "",
          budget: str = "usd_per_day = 1000.0\n") -> Iterator[tuple[str, Any, Ledger]]:
    ledger = Ledger(tmp_path / "ledger.db")
    text = policy_text(scripted.url, extra, head, budget)  # type: ignore[attr-defined]
    app = build_app(parse_policy(text), scorer=LengthScorer(), ledger=ledger)
    try:
        with serve(app) as url:
            yield url, app, ledger
    finally:
        ledger.close()


def post(url: str, body: Any, key: str = "a", timeout: float = 30) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout,
                      headers={"authorization": f"Bearer {KEYS[key]}"})


class Background(threading.Thread):
    """A thread whose exception (a failed assert in it) fails the test at `join`."""

    def __init__(self, target: Any, *args: Any) -> None:
        super().__init__(target=self._run, args=(target, *args))
        self.error: BaseException | None = None

    def _run(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def row(app: Any, ledger: Ledger, request_id: str, timeout_s: float = 10.0) -> RequestRecord:
    """The ledger row of a request, once the accountant and the ledger have written it."""
    deadline = time.monotonic() + timeout_s
    while True:
        app.accountant.flush()
        ledger.flush()
        found = [r for r in ledger.query() if r.request_id == request_id]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, f"no ledger row for {request_id}"
    return found[0]


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


def remaining_budget(url: str) -> float:
    """What the proxy says is left of key a's daily budget (a cheap answer asks it)."""
    r = post(url, chat("how much is left?"))
    return float(r.headers["x-tierwise-budget-daily-remaining-usd"])


def read_until(response: httpx.Response, stop: Any) -> None:
    """Read SSE events until `stop(chunk)` is true, then return (the caller hangs up)."""
    for line in response.iter_lines():
        if line.startswith("data: {") and stop(json.loads(line[6:])):
            return
    raise AssertionError("the stream ended before the point to hang up at")


# -- item 1: an answer that left the building is charged ------------------------------------------

def test_stream_left_after_its_finish_reason_is_charged_exactly(scripted, tmp_path):
    with proxy(scripted, tmp_path) as (url, app, ledger):
        before = remaining_budget(url)
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          json=chat("pause-usage please", stream=True),
                          headers={"authorization": f"Bearer {KEYS['a']}"}) as r:
            rid = r.headers["x-tierwise-request-id"]
            read_until(r, lambda c: c["choices"] and c["choices"][0].get("finish_reason"))
        # the client is gone before the usage chunk: the upstream's usage is still charged
        got = row(app, ledger, rid)
        assert got.outcome == "cancelled" and got.status == 499
        assert (got.prompt_tokens, got.completion_tokens) == (10, 20)
        assert got.cost_usd == pytest.approx(CALL_COST)
        assert metric(url, "tierwise_cost_usd_total") >= CALL_COST
        deadline = time.monotonic() + 5
        while before - remaining_budget(url) < CALL_COST and time.monotonic() < deadline:
            time.sleep(0.05)
        assert before - remaining_budget(url) >= CALL_COST - 1e-9


def test_stream_left_after_its_finish_reason_without_usage_in_time_is_estimated(
        scripted, tmp_path, caplog):
    with proxy(scripted, tmp_path) as (url, app, ledger):
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          json=chat("pause-long please", stream=True),
                          headers={"authorization": f"Bearer {KEYS['a']}"}) as r:
            rid = r.headers["x-tierwise-request-id"]
            read_until(r, lambda c: c["choices"] and c["choices"][0].get("finish_reason"))
        got = row(app, ledger, rid)
        assert got.outcome == "cancelled" and got.cost_usd > 0
        assert (got.prompt_tokens, got.completion_tokens) != (10, 20)  # estimated
    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "CRITICAL")]


def test_stream_left_half_way_is_charged_for_what_went_out(scripted, tmp_path):
    with proxy(scripted, tmp_path) as (url, app, ledger):
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          json=chat("drip slowly", stream=True),
                          headers={"authorization": f"Bearer {KEYS['a']}"}) as r:
            rid = r.headers["x-tierwise-request-id"]
            read_until(r, lambda c: "w3" in str(c))
        got = row(app, ledger, rid)
        # no usage from the upstream: estimated from the prompt and the text that went out
        assert got.outcome == "cancelled" and got.completion_tokens >= 1
        assert got.prompt_tokens >= 1 and got.cost_usd > 0


# -- item 2: no free ride on a coalesced call whose payer hung up ---------------------------------

def test_follower_pays_when_the_leader_left_before_the_answer(scripted, tmp_path):
    with proxy(scripted, tmp_path) as (url, app, ledger):
        scripted.hits.clear()
        body = chat("slow shared question")

        def leader() -> None:
            with pytest.raises(httpx.ReadTimeout):  # hangs up after 0.4 s, before the answer
                post(url, body, timeout=0.4)

        thread = Background(leader)
        thread.start()
        time.sleep(0.15)
        follower = post(url, body)
        thread.join()
        assert follower.status_code == 200 and scripted.hits["slow shared question"] == 1
        assert float(follower.headers["x-tierwise-cost-usd"]) == pytest.approx(CALL_COST)
        got = row(app, ledger, follower.headers["x-tierwise-request-id"])
        assert got.cost_usd == pytest.approx(CALL_COST) and not got.coalesced


def test_a_shared_stream_is_paid_once_when_its_leader_leaves_half_way(scripted, tmp_path):
    with proxy(scripted, tmp_path) as (url, app, ledger):
        scripted.hits.clear()
        body = chat("slow drip shared", stream=True)
        headers = {"authorization": f"Bearer {KEYS['a']}"}
        ids: dict[str, str] = {}

        def follower() -> None:
            time.sleep(0.2)
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30,
                              headers=headers) as r:
                ids["follower"] = r.headers["x-tierwise-request-id"]
                assert r.headers["x-tierwise-coalesced"] == "yes"
                assert r.read().endswith(b"data: [DONE]\n\n")

        thread = Background(follower)
        thread.start()
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30,
                          headers=headers) as r:
            ids["leader"] = r.headers["x-tierwise-request-id"]
            read_until(r, lambda c: "w2" in str(c))
        thread.join()
        assert scripted.hits["slow drip shared"] == 1
        rows = [row(app, ledger, ids[k]) for k in ("leader", "follower")]
        # one call, paid once: by the follower that got the whole answer
        assert sum(r.cost_usd for r in rows) == pytest.approx(CALL_COST)
        assert rows[1].cost_usd == pytest.approx(CALL_COST)


# -- item 14: tenants do not share calls unless the operator says so ------------------------------

def _two_tenants(url: str) -> list[httpx.Response]:
    out: dict[str, httpx.Response] = {}

    def ask(key: str, delay: float) -> None:
        time.sleep(delay)
        out[key] = post(url, chat("slow tenant question"), key=key)

    threads = [Background(ask, k, d) for k, d in (("a", 0), ("b", 0.2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [out["a"], out["b"]]


def test_identical_requests_of_two_keys_make_two_calls(scripted, tmp_path):
    with proxy(scripted, tmp_path) as (url, _, _):
        scripted.hits.clear()
        answers = _two_tenants(url)
        assert scripted.hits["slow tenant question"] == 2
        assert [r.headers["x-tierwise-coalesced"] for r in answers] == ["no", "no"]
        assert all(float(r.headers["x-tierwise-cost-usd"]) > 0 for r in answers)
    with proxy(scripted, tmp_path / "opt-in", head="coalesce_across_keys = true") as (url, _, _):
        scripted.hits.clear()
        answers = _two_tenants(url)
        assert scripted.hits["slow tenant question"] == 1
        assert answers[1].headers["x-tierwise-coalesced"] == "yes"


# -- items 3 and 4: budgets and tokens per minute are reserved at admission, atomically ---------

def _burst(urls: list[str], n: int, **fields: Any) -> list[httpx.Response]:
    """n distinct slow requests sent at once (one event loop, a connection each), spread over
    `urls`."""
    import asyncio

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=limits, headers={
                "authorization": f"Bearer {KEYS['a']}"}) as client:
            return list(await asyncio.gather(*(
                client.post(urls[i % len(urls)] + "/v1/chat/completions",
                            json=chat(f"slow burst {i:03d}", **fields)) for i in range(n))))

    return asyncio.run(go())


# the estimate of one burst request at the top tier's prices (~25 prompt tokens by size, 50
# output tokens) is ~0.25 USD; its real cost at the small tier is CALL_COST (0.05 USD)
BUDGET = "usd_per_day = 1.0\n"


def _check_budget(answers: list[httpx.Response], url: str) -> None:
    admitted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(admitted) + len(refused) == len(answers)
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    # admission stopped when the reserved estimates reached the budget
    assert 1 <= len(admitted) <= 5, len(admitted)
    # settled to the real cost: what is left is the budget minus what the answers cost
    left = float(post(url, chat("left?", max_tokens=1)).headers.get(
        "x-tierwise-budget-daily-remaining-usd", "nan"))
    assert left == pytest.approx(1.0 - len(admitted) * CALL_COST, abs=1e-6)


def test_a_burst_cannot_overspend_the_budget(scripted, tmp_path):
    with proxy(scripted, tmp_path, budget=BUDGET) as (url, _, _):
        _check_budget(_burst([url], 40, max_tokens=50), url)


def test_a_burst_over_two_replicas_on_redis_cannot_overspend_or_pass_tpm(scripted, tmp_path):
    server = RedisServer(require_binary("redis-server"), tmp_path).start()
    try:
        head = f'state = "{server.url}"'
        with proxy(scripted, tmp_path / "one", budget=BUDGET, head=head) as (one, _, _), \
                proxy(scripted, tmp_path / "two", budget=BUDGET, head=head) as (two, _, _):
            _check_budget(_burst([one, two], 40, max_tokens=50), one)
        # tokens per minute: ~75 tokens estimated per request, 1,000 a minute
        start_of_a_window()
        tpm = "tokens_per_minute = 1000\n"
        with proxy(scripted, tmp_path / "three", tpm, head=head) as (one, _, _), \
                proxy(scripted, tmp_path / "four", tpm, head=head) as (two, _, _):
            answers = _burst([one, two], 100, max_tokens=50)
        admitted = sum(r.status_code == 200 for r in answers)
        assert 1 <= admitted <= 14, admitted
        assert all(r.json()["error"]["code"] == "rate_limit_exceeded"
                   for r in answers if r.status_code != 200)
    finally:
        server.stop()


# -- item 5: a null max_completion_tokens does not hide max_tokens ------------------------------

HIDDEN = {"max_completion_tokens": None, "max_tokens": 9_000_000}


def test_a_null_max_completion_tokens_hides_no_max_tokens(scripted, tmp_path):
    with proxy(scripted, tmp_path, "max_tokens = 100\n") as (url, _, _):
        r = post(url, chat("greedy", **HIDDEN))
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    # the context-window check (100,000 tokens on both tiers) sees it too
    with proxy(scripted, tmp_path / "window") as (url, _, _):
        r = post(url, chat("greedy", **HIDDEN))
        assert r.status_code == 400 and r.json()["error"]["code"] == "no_eligible_tier"
    # and the tokens-per-minute estimate: a second request while the first is in flight is
    # refused, since the first reserved its whole output budget
    with proxy(scripted, tmp_path / "tpm", "tokens_per_minute = 50000\n") as (url, _, _):
        start_of_a_window()
        body = chat("slow greedy", max_completion_tokens=None, max_tokens=40_000)
        first = Background(lambda: post(url, body))
        first.start()
        time.sleep(0.3)
        second = post(url, chat("slow greedy too", max_completion_tokens=None,
                                max_tokens=40_000))
        first.join()
        assert second.status_code == 429, second.text
        assert second.json()["error"]["code"] == "rate_limit_exceeded"


# -- item 6: a malformed upstream usage neither fails a paid answer nor poisons the books --------

@pytest.mark.parametrize("kind", ["usage-str", "usage-nan", "usage-huge"])
def test_malformed_usage_is_sanitised(scripted, tmp_path, kind):
    with proxy(scripted, tmp_path) as (url, app, ledger):
        plain = post(url, chat(f"{kind} plain"))
        assert plain.status_code == 200, plain.text
        assert plain.json()["choices"][0]["message"]["content"] == ANSWER
        cost = float(plain.headers["x-tierwise-cost-usd"])
        # estimated: the prompt's tokens and ~4 characters per token of the answer
        assert 0 < cost < 1
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          json=chat(f"{kind} streamed", stream=True),
                          headers={"authorization": f"Bearer {KEYS['a']}"}) as r:
            text = r.read().decode()
            rid = r.headers["x-tierwise-request-id"]
        assert r.status_code == 200 and text.endswith("data: [DONE]\n\n")
        assert '"error"' not in text and ANSWER.split()[-1] in text
        rows = [row(app, ledger, rid), row(app, ledger, plain.headers["x-tierwise-request-id"])]
        for got in rows:
            assert got.outcome == "ok" and 0 < got.cost_usd < 1
            assert 0 < got.completion_tokens < 1000 and got.prompt_tokens < 1000
        assert 0 < metric(url, "tierwise_cost_usd_total") < 2
        assert metric(url, "tierwise_tokens_total") < 10_000


# -- items 7 and 8: only whole, checked answers are cached, and no more of them than allowed ------

CACHE = '[cache]\nenabled = true\nscope = "global"\n'


def stream_text(url: str, body: Any, key: str = "a") -> tuple[httpx.Response, str]:
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {KEYS[key]}"}) as r:
        return r, r.read().decode()


def test_a_stream_the_client_left_is_not_cached(scripted, tmp_path):
    with proxy(scripted, tmp_path, CACHE) as (url, _, _):
        body = chat("drip into the cache", stream=True)
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"authorization": f"Bearer {KEYS['a']}"}) as r:
            read_until(r, lambda c: "w2" in str(c))
        time.sleep(0.3)
        again, text = stream_text(url, body, key="b")
        assert again.headers["x-tierwise-cache"] == "miss"
        assert '"finish_reason": "stop"' in text and text.endswith("data: [DONE]\n\n")
        # the whole answer was stored: the cache itself works
        assert stream_text(url, body)[0].headers["x-tierwise-cache"] == "hit"


def test_a_stream_that_broke_after_its_first_byte_is_not_cached(scripted, tmp_path):
    with proxy(scripted, tmp_path, CACHE) as (url, _, _):
        body = chat("breaks in the cache", stream=True)
        first, text = stream_text(url, body)
        assert '"error"' in text  # reported in-band
        again, text = stream_text(url, body, key="b")
        assert again.headers["x-tierwise-cache"] == "miss" and '"error"' in text


def test_an_answer_that_failed_its_check_is_not_cached(scripted, tmp_path):
    with proxy(scripted, tmp_path, CACHE) as (url, _, _):
        first = post(url, chat("refuse this one"))
        assert first.status_code == 200 and first.headers["x-tierwise-check-failed"] == "refusal"
        again = post(url, chat("refuse this one"), key="b")
        assert again.headers["x-tierwise-cache"] == "miss"
        assert again.headers["x-tierwise-check-failed"] == "refusal"


def test_cache_max_entries_is_honoured(scripted, tmp_path):
    with proxy(scripted, tmp_path, CACHE + "max_entries = 3\n") as (url, _, _):
        for i in range(5):
            assert post(url, chat(f"entry {i}")).headers["x-tierwise-cache"] == "miss"
        assert post(url, chat("entry 4")).headers["x-tierwise-cache"] == "hit"
        assert post(url, chat("entry 0")).headers["x-tierwise-cache"] == "miss"  # evicted


# -- item 15: a provider's 401 is not the client's 401 -------------------------------------------

@pytest.mark.parametrize("transport", ["passthrough", "litellm"])
def test_a_provider_401_is_a_502_that_blames_the_tier_not_the_client(scripted, tmp_path,
                                                                     monkeypatch, transport):
    monkeypatch.setenv("TIERWISE_TEST_PROVIDER_KEY", PROVIDER_KEY)
    own = 'api_key_env = "TIERWISE_TEST_PROVIDER_KEY"\n'
    if transport == "litellm":
        own += 'transport = "litellm"\n'
    text = policy_text(scripted.url).replace(  # type: ignore[attr-defined]
        'name = "small"\n', 'name = "small"\n' + own)
    ledger = Ledger(tmp_path / "auth.db")
    app = build_app(parse_policy(text), scorer=LengthScorer(), ledger=ledger)
    try:
        with serve(app) as url:
            for stream in (False, True):
                r = post(url, chat("auth401 please", stream=stream))
                assert r.status_code == 502, r.text
                error = r.json()["error"]
                assert error["code"] == "upstream_auth_failed"
                assert "'small'" in error["message"] and "operator" in error["message"]
                assert "sk-" not in r.text and PROVIDER_KEY not in r.text
    finally:
        ledger.close()


# -- item 10: SIGTERM flushes the books ------------------------------------------------------------

@pytest.mark.serve_process
def test_sigterm_keeps_the_rows_of_requests_answered_during_shutdown(scripted, tmp_path):
    import os
    import signal
    import subprocess

    from guardkit import free_port, wait_ready

    policy = tmp_path / "policy.toml"
    # the budget's charges are among the books a shutdown keeps; several workers without Redis
    # refuse a budget (tests/serveproc.py), and the rows are what this test checks
    budget = "usd_per_day = 1000.0\n" if workers() == 1 else ""
    policy.write_text(policy_text(scripted.url, budget=budget))  # type: ignore[attr-defined]
    path, port = tmp_path / "ledger.db", free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        serve_argv("--policy", str(policy), "--port", str(port), "--log-level", "warning",
                   "--ledger", str(path)), cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]
        answers: dict[int, httpx.Response] = {}

        def ask(i: int) -> None:
            answers[i] = post(url, chat(f"slow shutdown {i}"))

        threads = [Background(ask, i) for i in range(10)]
        for t in threads:
            t.start()
        # all in flight: the upstream has every request and answers each after 0.8 s (a fixed
        # sleep here could race a loaded machine's accept backlog; see test_serve_workers.py)
        deadline = time.monotonic() + 20
        while any(scripted.hits[f"slow shutdown {i}"] == 0 for i in range(10)):
            assert time.monotonic() < deadline, dict(scripted.hits)
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert proc.wait(30) == 0  # a graceful stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert sorted(r.status_code for r in answers.values()) == [200] * 10
    ids = sorted(r.headers["x-tierwise-request-id"] for r in answers.values())
    assert sorted(r.request_id for r in Ledger(path).query()) == ids


# -- item 11: an upstream line that never ends is refused, not buffered without bound ------------

def test_an_endless_sse_line_ends_the_stream_in_band_at_once(tmp_path):
    from badupstream import BadUpstream

    upstream = BadUpstream().start()
    try:
        policy = (f'name = "longline"\ntimeout_s = 30\nmax_escalations = 0\n'
                  f'[[tiers]]\nname = "only"\nmodel = "openai/longline"\n'
                  f'api_base = "{upstream.url}"\nability = 1.0\n'
                  'input_per_mtok = 1.0\noutput_per_mtok = 1.0\n')
        app = build_app(parse_policy(policy), scorer=LengthScorer())
        with serve(app) as url:
            started = time.monotonic()
            r = httpx.post(url + "/v1/chat/completions", timeout=60,
                           json={"model": "auto", "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]})
            elapsed = time.monotonic() - started
        assert r.status_code == 200 and "hello" in r.text
        assert '"error"' in r.text and r.text.endswith("data: [DONE]\n\n")
        # refused once the line passed the cap (8 MB), not after the 30 s stall timeout
        assert elapsed < 10, elapsed
    finally:
        upstream.stop()


# -- item 9: a stream escalates until its first byte reaches the client --------------------------

@pytest.mark.parametrize("mode", ["rolereset", "rolehang"])
def test_a_stream_that_breaks_after_its_role_chunk_escalates(mode):
    from badupstream import BadUpstream

    upstream = BadUpstream().start()
    try:
        tiers = "".join(
            f'[[tiers]]\nname = "{name}"\nmodel = "openai/{model}"\napi_base = "{upstream.url}"\n'
            f'ability = {ability}\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n'
            for name, model, ability in (("first", mode, 1.0), ("second", "ok", 2.0)))
        policy = f'name = "role"\ntimeout_s = 1\nmax_escalations = 1\n{tiers}'
        app = build_app(parse_policy(policy), scorer=LengthScorer())
        with serve(app) as url:
            r = httpx.post(url + "/v1/chat/completions", timeout=30,
                           json={"model": "auto", "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert r.headers["x-tierwise-tier"] == "second"
        assert r.headers["x-tierwise-escalated"].startswith("stream_")
        assert "hello" in r.text and '"error"' not in r.text
    finally:
        upstream.stop()


# -- item 14 (dashboard): one tenant's key does not show every tenant's traffic ------------------

def test_the_dashboard_needs_an_admin_key(scripted, tmp_path):
    admin = "sk-integrity-admin-0123456789"
    extra = f'\n[[auth.keys]]\nid = "ops"\nsha256 = "{hash_key(admin)}"\nadmin = true\n'
    text = policy_text(scripted.url) + extra  # type: ignore[attr-defined]
    ledger = Ledger(tmp_path / "dash.db")
    app = build_app(parse_policy(text), scorer=LengthScorer(), ledger=ledger)
    try:
        with serve(app) as url:
            assert post(url, chat("team a's secret question")).status_code == 200
            for path in ("/dashboard", "/dashboard/data"):
                tenant = httpx.get(url + path, timeout=30,
                                   headers={"authorization": f"Bearer {KEYS['b']}"})
                assert tenant.status_code == 403
                assert tenant.json()["error"]["code"] == "admin_key_required"
                assert "team a" not in tenant.text
                ops = httpx.get(url + path, timeout=30,
                                headers={"authorization": f"Bearer {admin}"})
                assert ops.status_code == 200, (path, ops.text[:200])
    finally:
        ledger.close()


# -- item 12: the whole call is bounded, not only the gaps between its events --------------------

@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_a_trickling_stream_ends_at_max_call_s(transport):
    from badupstream import BadUpstream

    upstream = BadUpstream().start()
    try:
        tiers = "".join(
            f'[[tiers]]\nname = "{model}"\nmodel = "openai/{model}"\n'
            f'api_base = "{upstream.url}"\nability = 1.0\ntransport = "{transport}"\n'
            'input_per_mtok = 1.0\noutput_per_mtok = 1.0\n' for model in ("trickle", "ok"))
        policy = f'name = "trickle"\ntimeout_s = 5\nmax_call_s = 2.5\nmax_escalations = 0\n{tiers}'
        app = build_app(parse_policy(policy), scorer=LengthScorer())
        with serve(app) as url:
            # litellm's first call of a process imports it (seconds): not this test's subject
            assert httpx.post(url + "/v1/chat/completions", timeout=60, headers={
                "x-tierwise-tier": "ok"}, json={"model": "auto", "stream": True, "messages": [
                    {"role": "user", "content": "warm up"}]}).status_code == 200
            started = time.monotonic()
            text = ""
            with httpx.stream("POST", url + "/v1/chat/completions", timeout=30, json={
                    "model": "auto", "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}) as r:
                for line in r.iter_lines():  # (a chunk a second: never ends without the fix)
                    text += line + "\n"
                    if time.monotonic() - started > 10:
                        break
            elapsed = time.monotonic() - started
        assert " t1" in text and '"error"' in text and text.rstrip().endswith("data: [DONE]")
        assert elapsed < 6, elapsed
    finally:
        upstream.stop()


# -- item 13: slow clients and connection floods are bounded -------------------------------------

@contextmanager
def serve_protected(app: Any) -> Iterator[tuple[str, int]]:
    """The app under uvicorn with the policy's server limits (as `tierwise serve` runs it)."""
    import uvicorn
    from guardkit import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", **app.server_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(30)


def test_slow_header_clients_are_cut_and_a_flood_is_capped(tmp_path):
    import socket

    from guardkit import sim_policy

    policy = sim_policy(head="client_timeout_s = 1\nmax_connections = 40\n")
    app = build_app(parse_policy(policy), scorer=LengthScorer())
    with serve_protected(app) as (url, port):
        slow = []
        for _ in range(100):  # each sends half a request head, then nothing
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        started = time.monotonic()
        closed_at = []
        for s in slow:
            s.settimeout(max(0.1, 4 - (time.monotonic() - started)))
            try:
                if s.recv(1024) == b"":
                    closed_at.append(time.monotonic() - started)
            except ConnectionResetError:  # closed with our half head unread: a reset
                closed_at.append(time.monotonic() - started)
            except TimeoutError:
                pass  # still held open by the server
            finally:
                s.close()
        # all closed by the server: beyond the cap at once, the others after client_timeout_s
        assert len(closed_at) == 100, len(closed_at)
        assert max(closed_at) < 3
        r = httpx.post(url + "/v1/chat/completions", json=chat("still served"), timeout=30)
        assert r.status_code == 200


@pytest.mark.serve_process
def test_sigterm_with_a_stream_open_exits_within_the_grace_time(tmp_path):
    import os
    import signal
    import subprocess

    from badupstream import BadUpstream
    from guardkit import free_port, wait_ready

    upstream = BadUpstream().start()
    policy = tmp_path / "policy.toml"
    policy.write_text(f'name = "grace"\nshutdown_grace_s = 1\ntimeout_s = 5\n'
                      f'[[tiers]]\nname = "only"\nmodel = "openai/trickle"\n'
                      f'api_base = "{upstream.url}"\nability = 1.0\n'
                      'input_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n')
    path, port = tmp_path / "ledger.db", free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        serve_argv("--policy", str(policy), "--port", str(port), "--log-level", "warning",
                   "--ledger", str(path)), cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]
        got: dict[str, str] = {}

        def listen() -> None:
            with httpx.stream("POST", url + "/v1/chat/completions", timeout=30, json={
                    "model": "auto", "stream": True,
                    "messages": [{"role": "user", "content": "trickle on"}]}) as r:
                got["id"] = r.headers["x-tierwise-request-id"]
                try:
                    for _ in r.iter_lines():  # the trickle never ends by itself
                        pass
                except httpx.HTTPError:
                    pass  # cut by the shutdown

        reader = Background(listen)
        reader.start()
        time.sleep(1.5)  # the stream is open and has sent its first chunks
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0  # cut at the grace time, still a graceful stop
        assert time.monotonic() - started < 6
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        upstream.stop()
    # the stream cut by the shutdown went out in part: it is in the books, charged
    (row,) = [r for r in Ledger(path).query() if r.request_id == got["id"]]
    assert row.cost_usd > 0
