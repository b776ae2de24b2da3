"""Request coalescing, measured at the test upstream: identical requests in flight share one call.

The herd test is the issue's acceptance test: 50 concurrent identical requests through the proxy
(stream and non-stream mixed) reach the upstream once, all 50 get the complete answer, and
clients that disconnect early do not disturb the others.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest
from upstreams import MisbehavingUpstream, make_policy

from router import Router
from router.coalescing.inflight import InProcessCoalescer

pytestmark = pytest.mark.usefixtures("close_passthrough")



def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def _stream_text(client: openai.AsyncOpenAI, model: str, text: str) -> tuple[str, str]:
    async with client.chat.completions.with_streaming_response.create(
            model=model, messages=ask(text), stream=True) as raw:
        pieces = [c.choices[0].delta.content or "" async for c in await raw.parse()
                  if c.choices]
        return "".join(pieces), raw.headers["x-tierwise-coalesced"]


async def _text(client: openai.AsyncOpenAI, model: str, text: str) -> tuple[str, str]:
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=ask(text))
    return raw.parse().choices[0].message.content or "", raw.headers["x-tierwise-coalesced"]


async def _leave_early(proxy: str, body: dict[str, Any], stream: bool) -> None:
    """A client that reads a little (stream) or waits a little (non-stream), then hangs up."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=30.0 if stream else 0.3)) as http:
        if stream:
            async with http.stream("POST", proxy + "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                async for _ in r.aiter_bytes():
                    break
            return
        with pytest.raises(httpx.ReadTimeout):
            await http.post(proxy + "/v1/chat/completions", json=body)


async def _readyz(proxy: str) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=30) as http:
        return dict((await http.get(proxy + "/readyz")).json()["coalescing"])


async def test_fifty_identical_requests_reach_the_upstream_once(
        proxy: str, upstream: MisbehavingUpstream) -> None:
    prompt = f"herd question {time.time()}"
    expected = f"[herd] answer to: {prompt}"
    before = await _readyz(proxy)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0,
                                    http_client=http)
        body = {"model": "herd", "messages": ask(prompt)}
        first = asyncio.ensure_future(_stream_text(client, "herd", prompt))
        await asyncio.sleep(0.1)  # the leader's call is in flight: the rest join it
        quitters = [asyncio.ensure_future(_leave_early(proxy, {**body, "stream": True}, True)),
                    asyncio.ensure_future(_leave_early(proxy, body, False))]
        await asyncio.sleep(0.1)  # let them join before the crowd
        rest = [(_stream_text if i % 2 else _text)(client, "herd", prompt) for i in range(49)]
        results = await asyncio.gather(first, *rest)
        await asyncio.gather(*quitters)
    texts = [text for text, _ in results]
    assert texts == [expected] * 50  # complete and identical, stream and non-stream alike
    assert upstream.hits == {"herd": 1}
    assert upstream.finished_streams["herd"] == 1  # the shared call ran to its end
    # one of the 52 led (normally `first`; on a loaded machine a quitter may overtake it)
    assert [flag for _, flag in results].count("yes") >= 49
    after = await _readyz(proxy)
    assert after["calls"] - before["calls"] == 1
    assert after["coalesced"] - before["coalesced"] == 51  # 49 + the two that left early
    assert after["cancelled"] == before["cancelled"]


async def test_the_leader_leaving_does_not_cancel_the_call_for_followers(
        proxy: str, upstream: MisbehavingUpstream) -> None:
    prompt = f"leader leaves {time.time()}"
    body = {"model": "herd", "messages": ask(prompt), "stream": True}
    leader = asyncio.ensure_future(_leave_early(proxy, body, True))
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient(timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0,
                                    http_client=http)
        results = await asyncio.gather(*[(_stream_text if i % 2 else _text)(
            client, "herd", prompt) for i in range(6)])
    await leader
    assert {text for text, _ in results} == {f"[herd] answer to: {prompt}"}
    assert upstream.hits == {"herd": 1} and upstream.finished_streams["herd"] == 1


async def test_the_call_is_cancelled_when_its_last_waiter_leaves(
        proxy: str, upstream: MisbehavingUpstream) -> None:
    before = await _readyz(proxy)
    body = {"model": "long", "messages": ask(f"long story {time.time()}"), "stream": True}
    await asyncio.gather(_leave_early(proxy, body, True), _leave_early(proxy, body, True))
    deadline = time.monotonic() + 5
    while not upstream.aborted_streams["long"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert upstream.aborted_streams["long"] == 1 and upstream.finished_streams["long"] == 0
    assert upstream.hits == {"long": 1}
    after = await _readyz(proxy)
    assert after["cancelled"] - before["cancelled"] == 1
    # non-stream: a client that gives up is noticed while its answer is awaited
    await _leave_early(proxy, {"model": "slow", "messages": ask(f"slow {time.time()}")}, False)
    deadline = time.monotonic() + 5
    while (await _readyz(proxy))["cancelled"] - before["cancelled"] < 2:
        assert time.monotonic() < deadline, "the abandoned non-stream call was not cancelled"
        await asyncio.sleep(0.05)


async def test_opt_out_per_request_header(proxy: str, upstream: MisbehavingUpstream) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0,
                                    http_client=http)
        prompt = f"opt out {time.time()}"
        raws = await asyncio.gather(*[client.chat.completions.with_raw_response.create(
            model="herd", messages=ask(prompt), extra_headers={"x-tierwise-coalesce": "off"})
            for _ in range(3)])
    assert upstream.hits == {"herd": 3}
    assert {r.headers["x-tierwise-coalesced"] for r in raws} == {"no"}


async def test_different_requests_are_not_coalesced(proxy: str,
                                                    upstream: MisbehavingUpstream) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0,
                                    http_client=http)
        prompt = f"differs {time.time()}"
        await asyncio.gather(
            client.chat.completions.create(model="herd", messages=ask(prompt)),
            client.chat.completions.create(model="herd", messages=ask(prompt), temperature=0),
            client.chat.completions.create(model="herd", messages=ask(prompt + "!")))
    assert upstream.hits == {"herd": 3}


# --- the Router (SDK) level ---------------------------------------------------------------------

async def test_opt_out_per_policy(upstream: MisbehavingUpstream) -> None:
    for coalesce, hits in (("true", 1), ("false", 3)):
        upstream.reset()
        policy = make_policy(upstream.url, ("herd", "herd", 3.0),
                             header=f"coalesce = {coalesce}\n")
        router = Router(policy)
        responses = await asyncio.gather(*[router.acomplete("same question") for _ in range(3)])
        assert upstream.hits == {"herd": hits}
        assert len({r.choices[0].message.content for r in responses}) == 1
        assert [r.tierwise.coalesced for r in responses].count(True) == 3 - hits


class Delegating:
    """A Coalescer of another kind (as a shared one would be): only join() and stats."""

    def __init__(self) -> None:
        self.inner = InProcessCoalescer()
        self.stats = self.inner.stats

    def join(self, key: str, start: Any, *, stream: bool) -> Any:
        return self.inner.join(key, start, stream=stream)


async def test_opt_out_works_with_any_coalescer(upstream: MisbehavingUpstream) -> None:
    router = Router(make_policy(upstream.url, ("herd", "herd", 3.0)), coalescer=Delegating())
    body = {"model": "auto", "messages": ask("any coalescer")}
    outcomes = await asyncio.gather(*[router.serve(body, coalesce=False) for _ in range(2)])
    assert upstream.hits == {"herd": 2} and not any(o.routing.coalesced for o in outcomes)
    assert router.coalescer.stats["calls"] == 2  # type: ignore[attr-defined]
    stream = await router.serve({**body, "stream": True}, coalesce=False)
    await stream.stream.aclose()  # type: ignore[union-attr]  # left early: the call is cancelled
    assert router.coalescer.stats["cancelled"] == 1  # type: ignore[attr-defined]


async def test_cost_is_charged_once_per_upstream_call(upstream: MisbehavingUpstream) -> None:
    policy = make_policy(upstream.url, ("herd", "herd", 3.0))
    router = Router(policy)
    seen: list[Any] = []
    router.listeners.append(seen.append)
    streams = [await router.acomplete("charge me", stream=True) for _ in range(2)]
    plain = await asyncio.gather(*[router.acomplete("charge me") for _ in range(3)])
    for stream in streams:
        assert "".join([c.choices[0].delta.content or "" async for c in stream
                        if c.choices]) == "[herd] answer to: charge me"
    assert upstream.hits == {"herd": 1}
    assert len(seen) == 5 and all(r.usage and r.usage["total_tokens"] == 30 for r in seen)
    leaders = [r for r in seen if not r.coalesced]
    assert len(leaders) == 1  # an accounting listener charges only this one
    assert {r.tierwise.coalesced for r in plain} == {True}


async def test_uncoalesced_streams_run_in_the_request_and_end_cleanly(
        upstream: MisbehavingUpstream) -> None:
    """Without coalescing a stream is read in its request's own task (no flight): a failure
    before the first byte still escalates (and is no 'cancelled' call), the answer still comes
    whole with its usage and one [DONE], and a client leaving half-way stops the upstream."""
    import json

    from upstreams import start_proxy

    from router.serving.proxy import create_app

    policy = make_policy(upstream.url, ("fail500", "fail500", 3.0), ("small", "ok-small", 4.0),
                         ("long", "long", 5.0), header="coalesce = false\n")
    server = start_proxy(create_app(policy))
    body = {"model": "auto", "messages": ask("no flight"), "stream": True,
            "stream_options": {"include_usage": True}}
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(server.url + "/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.headers["x-tierwise-escalated"].startswith(
            "upstream_500:fail500->small")
        events = [e for e in r.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]" and r.text.count("[DONE]") == 1
        assert '"usage"' in events[-2]
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"]) == "[ok-small] answer to: no flight"
        assert (await _readyz(server.url))["cancelled"] == 0
        await _leave_early(server.url, {**body, "model": "long"}, stream=True)
        for _ in range(50):
            if upstream.aborted_streams["long"]:
                break
            await asyncio.sleep(0.1)
        assert upstream.aborted_streams["long"] == 1 and not upstream.finished_streams["long"]
        assert (await _readyz(server.url))["cancelled"] == 1
    finally:
        server.stop()
