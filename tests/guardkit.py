"""Helpers for the issue-6 tests: run an ASGI app under uvicorn on loopback in a thread, write
small policies, count this process's open file descriptors and RSS."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[Any], url: str, timeout_s: float = 90.0,
               output: Callable[[], str] | None = None) -> None:
    """Poll a server process's ``url``/readyz until it answers 200. Fails (with ``output()``,
    e.g. the process's log) if the process exits, or when ``timeout_s`` has passed."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, output() if output else f"{url}: the server process exited"
        assert time.monotonic() < deadline, f"{url}: not ready within {timeout_s:.0f} s"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


@contextmanager
def serve(app: Any, *, graceful_s: float = 5.0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 in a background thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=int(graceful_s))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


SIM_TIERS = """
[[tiers]]
name = "small"
model = "openai/sim-small"
api_base = "builtin"
ability = 1.0
input_per_mtok = 1000.0
output_per_mtok = 1000.0

[[tiers]]
name = "large"
model = "openai/sim-large"
api_base = "builtin"
ability = 2.6
input_per_mtok = 2000.0
output_per_mtok = 4000.0
"""


def sim_policy(extra: str = "", head: str = "") -> str:
    """A policy on the built-in simulator with deliberately high prices (budgets run out fast)."""
    return f'name = "guard-test"\nalias = "auto"\n{head}\n{SIM_TIERS}\n{extra}'


class LengthScorer:
    """A stand-in for the classifier (tests here are about the door, not the routing): every
    request is easy; n_tokens ~ chars / 4."""

    class Score:
        def __init__(self, n_tokens: int) -> None:
            self.difficulty = -2.0
            self.uncertainty = 0.0
            self.n_tokens = n_tokens

    def score(self, messages: list[dict[str, Any]]) -> Any:
        text = " ".join(m["content"] for m in messages if isinstance(m.get("content"), str))
        return self.Score(max(1, len(text) // 4))

    def score_batch(self, batch: list[list[dict[str, Any]]]) -> list[Any]:
        return [self.score(m) for m in batch]


@contextmanager
def guarded_proxy(policy_text: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """The full proxy (router.serving.app.build_app) for a policy, served on loopback and warm;
    yields (base URL, the Guard)."""
    import httpx

    from policies import parse_policy
    from router.serving.app import build_app

    app = build_app(parse_policy(policy_text), scorer=LengthScorer(), **kwargs)
    with serve(app) as url:
        deadline = time.monotonic() + 60
        while httpx.get(url + "/readyz", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy did not get ready")
            time.sleep(0.1)
        yield url, app


def chat(content: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **fields}
