"""The response cache at the proxy over real HTTP: hits, TTL, cache-control, per-key scope,
streams; and one cache shared by two proxies through a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from conftest import require_binary
from guardkit import chat, guarded_proxy, sim_policy
from redisproc import RedisServer

from router.access.auth import hash_key

KEYS = {"a": "sk-cache-a", "b": "sk-cache-b"}
AUTH = "".join(f'[[auth.keys]]\nid = "{i}"\nsha256 = "{hash_key(k)}"\n' for i, k in KEYS.items())


def post(url: str, body: object, key: str = "a", **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {KEYS[key]}", **headers})


def test_hits_ttl_no_store_no_cache_and_scope() -> None:
    with guarded_proxy(sim_policy(AUTH + "[cache]\nenabled = true\nttl_s = 1\n")) as (url, _):
        first = post(url, chat("cache me"))
        assert first.headers["x-tierwise-cache"] == "miss"
        hit = post(url, chat("cache me"))
        assert hit.headers["x-tierwise-cache"] == "hit" and hit.json() == first.json()
        assert float(hit.headers["x-tierwise-cost-usd"]) == 0  # saved: the whole baseline
        # key order does not matter: the body is canonicalised
        reordered = {"messages": [{"content": "cache me", "role": "user"}], "model": "auto"}
        assert post(url, reordered).headers["x-tierwise-cache"] == "hit"
        # another key does not see team a's answers (scope = "key")
        assert post(url, chat("cache me"), key="b").headers["x-tierwise-cache"] == "miss"
        # no-store: neither read nor written
        ns = post(url, chat("secret"), **{"cache-control": "no-store"})
        assert ns.headers["x-tierwise-cache"] == "bypass"
        assert post(url, chat("secret")).headers["x-tierwise-cache"] == "miss"
        # no-cache: fresh answer, stored
        assert post(url, chat("cache me"), **{"cache-control": "no-cache"}).headers[
            "x-tierwise-cache"] == "bypass"
        time.sleep(1.2)
        assert post(url, chat("cache me")).headers["x-tierwise-cache"] == "miss"


def test_streams_are_replayed_whole() -> None:
    with guarded_proxy(sim_policy(AUTH + "[cache]\nenabled = true\n")) as (url, _):
        first = post(url, chat("stream me", stream=True))
        again = post(url, chat("stream me", stream=True))
        assert again.headers["x-tierwise-cache"] == "hit"
        assert again.headers["content-type"].startswith("text/event-stream")
        assert again.text == first.text and again.text.endswith("data: [DONE]\n\n")
        assert post(url, chat("stream me")).headers["x-tierwise-cache"] == "miss"


def test_global_scope_shared_by_two_proxies_through_redis(tmp_path: Path) -> None:
    server = RedisServer(require_binary("redis-server"), tmp_path).start()
    try:
        policy = sim_policy(AUTH + '[cache]\nenabled = true\nscope = "global"\n',
                            head=f'state = "{server.url}"')
        with guarded_proxy(policy) as (one, _), guarded_proxy(policy) as (two, _):
            first = post(one, chat("shared"))
            assert first.headers["x-tierwise-cache"] == "miss"
            hit = post(two, chat("shared"), key="b")
            assert hit.headers["x-tierwise-cache"] == "hit" and hit.json() == first.json()
    finally:
        server.stop()
