"""Two real proxy processes (`tierwise serve`) and one real redis-server: identical concurrent
requests over both replicas reach the upstream once, a budget spent on one is enforced on the
other, and killing redis-server mid-test loses no request."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from badupstream import BadUpstream
from conftest import require_binary
from guardkit import free_port, wait_ready
from redisproc import RedisServer
from serveproc import serve_argv

from router.access.auth import hash_key

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.serve_process
KEY = "sk-replica-budget"
def policy_text(upstream: str, redis_url: str) -> str:
    tier = ('[[tiers]]\nname = "{name}"\nmodel = "openai/{model}"\n'
            f'api_base = "{upstream}"\nability = 3.0\ninput_per_mtok = 1000.0\n'
            'output_per_mtok = 1000.0\n')
    return (f'name = "replicas"\nstate = "{redis_url}"\ntimeout_s = 10\nmax_escalations = 0\n'
            + tier.format(name="slow", model="slow") + tier.format(name="ok", model="ok")
            + f'[[auth.keys]]\nid = "free"\nsha256 = "{hash_key("sk-free")}"\n'
            + f'[[auth.keys]]\nid = "tight"\nsha256 = "{hash_key(KEY)}"\nusd_per_day = 0.02\n')


class Replica:
    def __init__(self, policy: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # exactly `tierwise serve`, the shipped scorer included
        self.proc = subprocess.Popen(
            serve_argv("--policy", str(policy), "--port", str(self.port), "--log-level",
                       "warning",
                       # both replicas write one ledger file (several processes, WAL)
                       "--ledger", str(log.parent / "ledger.db")),
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        wait_ready(self.proc, self.url, 90, lambda: "replica exited")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Replica], Any]]:
    tmp = tmp_path_factory.mktemp("replicas")
    redis = RedisServer(require_binary("redis-server"), tmp).start()
    upstream = BadUpstream().start()
    policy = tmp / "policy.toml"
    policy.write_text(policy_text(upstream.url, redis.url))
    replicas = [Replica(policy, tmp / f"replica{i}.log") for i in range(2)]
    try:
        for r in replicas:
            r.wait_ready()
        yield replicas, (redis, upstream)
    finally:
        for r in replicas:
            r.stop()
        upstream.stop()
        redis.stop()


def body(content: str, model: str = "slow", **fields: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **fields}


async def fire(urls: list[str], bodies: list[dict[str, object]],
               key: str = "sk-free") -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=100)) as client:
        return await asyncio.gather(*(client.post(urls[i % len(urls)] + "/v1/chat/completions",
                                                  json=b) for i, b in enumerate(bodies)))


def test_40_identical_requests_over_two_replicas_reach_upstream_once(cluster: Any) -> None:
    replicas, (_, upstream) = cluster
    before = upstream.count("slow")
    bodies = [body("the same question", stream=(i % 4 == 0)) for i in range(40)]
    responses = asyncio.run(fire([r.url for r in replicas], bodies))
    assert [r.status_code for r in responses] == [200] * 40
    assert upstream.count("slow") - before == 1
    coalesced = sum(r.headers["x-tierwise-coalesced"] == "yes" for r in responses)
    assert coalesced == 39
    plain = [r.json()["choices"][0]["message"]["content"] for r in responses if "json" in
             r.headers["content-type"]]
    assert len(set(plain)) == 1 and "hello there friend" in plain[0]  # one answer for all
    streamed = [r.text for r in responses if "event-stream" in r.headers["content-type"]]
    assert streamed and all("friend" in t and t.endswith("data: [DONE]\n\n") for t in streamed)


def test_budget_spent_on_one_replica_is_enforced_on_the_other(cluster: Any) -> None:
    replicas, _ = cluster
    one, two = replicas
    for i in range(20):  # each answer costs ~$0.013 at $1000/1M tokens; the budget is $0.02
        (r,) = asyncio.run(fire([one.url], [body(f"spend {i}", model="ok")], key=KEY))
        if r.status_code == 429:
            break
        assert r.status_code == 200
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    time.sleep(0.2)
    (other,) = asyncio.run(fire([two.url], [body("on the other replica", model="ok")], key=KEY))
    assert other.status_code == 429 and other.json()["error"]["code"] == "insufficient_quota"


def test_killing_redis_mid_test_loses_no_request(cluster: Any) -> None:
    replicas, (redis, upstream) = cluster
    urls = [r.url for r in replicas]

    async def scenario() -> list[httpx.Response]:
        # a quarter streamed: none has relayed a chunk yet when Redis dies (first byte at 0.5 s)
        batch = asyncio.ensure_future(fire(urls, [body(f"kill {i % 5}", stream=i % 4 == 0)
                                                  for i in range(40)]))
        await asyncio.sleep(0.25)
        redis.kill()
        first = await batch
        after = await fire(urls, [body("after the kill") for _ in range(10)]
                           + [body(f"fresh {i}", model="ok") for i in range(10)])
        return first + after

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 60
    streamed = [r.text for r in responses if "event-stream" in r.headers["content-type"]]
    assert len(streamed) == 10
    assert all('"error"' not in t and t.endswith("data: [DONE]\n\n") for t in streamed)
    logs = "".join(r.log.name and Path(r.log.name).read_text() for r in replicas)
    assert "using local state" in logs
    redis.start()  # the fixture stops it; later tests could use it again
