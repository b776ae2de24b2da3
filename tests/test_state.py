"""The State contract, run against MemoryState and a real redis-server; Redis fallback and
recovery with a killed and restarted server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import require_binary
from redisproc import RedisServer

from router.state import MemoryState, State, StateUnavailable, open_state


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[State]:
    if request.param == "memory":
        backend: State = MemoryState()
        yield backend
        await backend.close()
        return
    server = RedisServer(require_binary("redis-server"), tmp_path).start()
    backend = open_state(server.url)
    yield backend
    await backend.close()
    server.stop()


async def test_counters_add_and_expire(state: State) -> None:
    assert await state.get_number("c") == 0.0
    assert await state.incr("c", 1.5, ttl_s=0.3) == pytest.approx(1.5)
    assert await state.incr("c", 2, ttl_s=0.3) == pytest.approx(3.5)
    assert await state.get_number("c") == pytest.approx(3.5)
    await asyncio.sleep(0.45)  # the TTL counts from creation, later increments do not extend it
    assert await state.get_number("c") == 0.0
    assert await state.incr("c", 1, ttl_s=5) == pytest.approx(1.0)


async def test_values_set_get_expire(state: State) -> None:
    assert await state.get("k") is None
    await state.set("k", b"\x00binary\xff", ttl_s=0.3)
    assert await state.get("k") == b"\x00binary\xff"
    await asyncio.sleep(0.45)
    assert await state.get("k") is None


async def test_lock_has_one_owner_and_expires(state: State) -> None:
    assert await state.acquire("L", "a", ttl_s=0.4)
    assert not await state.acquire("L", "b", ttl_s=0.4)
    assert await state.holder("L") == "a"
    assert not await state.refresh("L", "b", ttl_s=0.4)
    assert await state.refresh("L", "a", ttl_s=0.4)
    await state.release("L", "b")  # not the owner: no effect
    assert await state.holder("L") == "a"
    await state.release("L", "a")
    assert await state.holder("L") is None
    assert await state.acquire("L", "b", ttl_s=0.2)
    await asyncio.sleep(0.35)
    assert await state.acquire("L", "c", ttl_s=0.2)


async def test_concurrent_acquire_elects_one_leader(state: State) -> None:
    won = await asyncio.gather(*(state.acquire("race", f"o{i}", 5) for i in range(40)))
    assert sum(won) == 1


async def test_stream_fans_out_to_late_and_waiting_readers(state: State) -> None:
    await state.append("s", b"one", ttl_s=5)

    async def follow() -> list[bytes]:
        got: list[bytes] = []
        after = "0"
        while len(got) < 3:
            entries = await state.read("s", after, timeout_s=2)
            assert entries, "reader timed out"
            got.extend(data for _, data in entries)
            after = entries[-1][0]
        return got

    readers = [asyncio.create_task(follow()) for _ in range(5)]
    await asyncio.sleep(0.05)
    await state.append("s", b"two", ttl_s=5)
    await state.append("s", b"three", ttl_s=5)
    for got in await asyncio.gather(*readers):
        assert got == [b"one", b"two", b"three"]
    assert await state.read("s", "0", timeout_s=0) != []


async def test_read_times_out_empty(state: State) -> None:
    t0 = asyncio.get_running_loop().time()
    assert await state.read("nothing", "0", timeout_s=0.2) == []
    assert 0.15 < asyncio.get_running_loop().time() - t0 < 1.5


async def test_memory_state_stays_bounded() -> None:
    state = MemoryState(max_entries=100)
    for i in range(5000):
        await state.set(f"v{i}", b"x", ttl_s=60)
        await state.incr(f"c{i}", 1, ttl_s=0.001)
    await asyncio.sleep(0.01)
    state.sweep()
    assert len(state) <= 100


async def test_redis_down_falls_back_and_recovers(redis_server: RedisServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    fallbacks: list[str] = []
    state = open_state(redis_server.url, on_fallback=fallbacks.append)
    try:
        assert await state.incr("spend", 1.0, ttl_s=60) == 1.0
        assert state.shared
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="tierwise.state"):
            t0 = asyncio.get_running_loop().time()
            # counters and cache keep answering from local memory, quickly
            assert await state.incr("spend", 2.0, ttl_s=60) == 2.0
            await state.set("k", b"v", ttl_s=60)
            assert await state.get("k") == b"v"
            assert asyncio.get_running_loop().time() - t0 < 2.0
        assert not state.shared
        assert "unreachable" in caplog.text
        assert "incr" in fallbacks and "get" in fallbacks
        # locks and streams refuse: the coalescer serves the request by itself instead
        with pytest.raises(StateUnavailable):
            await state.acquire("L", "me", 5)
        with pytest.raises(StateUnavailable):
            await state.read("s", "0", timeout_s=0.1)
        # Redis returns empty (same port, no persistence): after the back-off, state is shared
        # again, and spend counted locally during the outage is added to the shared total
        redis_server.start()
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                await state.holder("probe")
                break
            except StateUnavailable:
                continue
        assert state.shared
        assert await state.get_number("spend") == pytest.approx(2.0)
    finally:
        await state.close()
