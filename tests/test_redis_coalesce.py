"""Cross-replica coalescing (router.coalescing.shared) on a real redis-server: two SharedCoalescers
stand for two replicas. One upstream call for 40 identical requests, stream fan-out, and no lost
request when the leader fails or Redis dies mid-flight."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_binary
from redisproc import RedisServer

from router.coalescing.shared import SharedCoalescer
from router.state import State, open_state

RESPONSE = {"id": "r1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello world"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def chunk(text: str | None = None, finish: str | None = None,
          usage: dict[str, int] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"id": "r1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                         "choices": [] if usage else [
                             {"index": 0, "delta": {"content": text} if text else {},
                              "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    return c


class Upstream:
    """Counts calls; answers after `delay`, streaming word by word when asked to."""

    def __init__(self, delay: float = 0.3, fail_first: int = 0) -> None:
        self.calls = 0
        self.delay = delay
        self.fail_first = fail_first

    def starter(self, stream: bool) -> Any:
        async def start() -> Any:
            self.calls += 1
            await asyncio.sleep(self.delay)
            if self.calls <= self.fail_first:
                raise ConnectionResetError("upstream reset")
            return self._chunks() if stream else dict(RESPONSE)
        return start

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        for word in ("hello", " world"):
            await asyncio.sleep(0.05)
            yield chunk(word)
        yield chunk(finish="stop")
        yield chunk(usage=RESPONSE["usage"])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[list[SharedCoalescer]]:
    states: list[State] = [open_state(redis_server.url), open_state(redis_server.url)]
    yield [SharedCoalescer(s, follow_timeout_s=15) for s in states]
    for s in states:
        await s.close()


async def ask(c: SharedCoalescer, up: Upstream, stream: bool, key: str = "k") -> tuple[Any, bool]:
    sub = c.join(key, up.starter(stream), stream=stream)
    try:
        if stream:
            text = ""
            async for batch in sub.batches(include_usage=True):
                for ch in batch:
                    for choice in ch.get("choices") or []:
                        text += choice["delta"].get("content") or ""
            return text, sub.coalesced
        return await sub.response(), sub.coalesced
    finally:
        sub.close()


async def test_40_identical_requests_on_two_replicas_make_one_call(
        replicas: list[SharedCoalescer]) -> None:
    up = Upstream()
    results = await asyncio.gather(*(ask(replicas[i % 2], up, stream=False) for i in range(40)))
    assert up.calls == 1
    assert all(r == RESPONSE for r, _ in results)
    assert sum(coalesced for _, coalesced in results) == 39
    assert sum(c.stats["shared_leader"] for c in replicas) == 1
    assert sum(c.stats["shared_follower"] for c in replicas) == 1  # one flight per replica


async def test_stream_fans_out_to_stream_and_plain_followers(
        replicas: list[SharedCoalescer]) -> None:
    up = Upstream()
    leader = asyncio.create_task(ask(replicas[0], up, stream=True))
    await asyncio.sleep(0.1)
    streamed, plain = await asyncio.gather(ask(replicas[1], up, stream=True),
                                           ask(replicas[1], up, stream=False))
    assert (await leader)[0] == "hello world"
    assert streamed == ("hello world", True)
    assert plain[0]["choices"][0]["message"]["content"] == "hello world"
    assert plain[0]["usage"] == RESPONSE["usage"]
    assert up.calls == 1


async def test_plain_leader_serves_a_stream_follower(replicas: list[SharedCoalescer]) -> None:
    up = Upstream()
    leader = asyncio.create_task(ask(replicas[0], up, stream=False))
    await asyncio.sleep(0.1)
    assert await ask(replicas[1], up, stream=True) == ("hello world", True)
    assert (await leader)[0] == RESPONSE and up.calls == 1


async def test_leader_failure_makes_followers_call_themselves(
        replicas: list[SharedCoalescer]) -> None:
    up = Upstream(fail_first=1)
    leader = asyncio.create_task(ask(replicas[0], up, stream=False))
    await asyncio.sleep(0.1)
    follower = await ask(replicas[1], up, stream=False)
    assert follower == (RESPONSE, False)  # answered by its own call
    with pytest.raises(ConnectionResetError):
        await leader
    assert up.calls == 2


async def test_redis_killed_mid_flight_loses_no_request(redis_server: RedisServer,
                                                        replicas: list[SharedCoalescer]) -> None:
    fallbacks: list[str] = []
    for c in replicas:
        c.on_fallback = fallbacks.append
    up = Upstream(delay=1.0)
    tasks = [asyncio.create_task(ask(replicas[i % 2], up, stream=False)) for i in range(10)]
    await asyncio.sleep(0.3)
    redis_server.kill()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(r == RESPONSE for r, _ in results)
    assert up.calls == 2  # the follower replica called upstream itself
    assert "coalesce" in fallbacks
    # with Redis gone, each replica still coalesces its own identical requests
    up2 = Upstream(delay=0.2)
    results = await asyncio.gather(*(ask(replicas[i % 2], up2, False, "k2") for i in range(10)))
    assert all(r == RESPONSE for r, _ in results) and up2.calls == 2


async def test_entries_are_json_on_the_wire(redis_server: RedisServer,
                                            replicas: list[SharedCoalescer]) -> None:
    up = Upstream(delay=0.05)
    await ask(replicas[0], up, stream=False, key="wire")
    state = replicas[0].state
    keys = [k async for k in state.client.scan_iter("tierwise:flight:wire:*")]  # type: ignore
    assert keys, "the leader's stream is kept for late followers"
    entries = await state.read(keys[0].decode().removeprefix("tierwise:"), "0", 0)
    assert entries[0][1][:1] == b"R" and json.loads(entries[0][1][1:]) == RESPONSE
    assert entries[-1][1] == b"E"
