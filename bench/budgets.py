"""Concurrent budgets (issue 15, items 3 and 4): a burst of requests at once against one key's
daily budget, through real `tierwise serve` processes on the built-in simulator, with memory
state (one process) and with Redis (two replicas sharing one redis-server).

    .venv/bin/python bench/budgets.py [--n 200] [--budget 0.5] [--src DIR] [--out bench/BUDGETS.md]

For each setup it reports how many requests were admitted and refused (429), the estimate
reserved per request at admission, the real cost per request, the final spend (what the proxy
says is left of the budget afterwards) and by how much it passed the budget. `--src DIR` runs the
servers from another source tree (put first on PYTHONPATH, e.g. `git archive 8f1594e router
policies classifiers | tar -x -C /tmp/old`) to measure the behaviour before the change.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench-budget-0123456789"
MAX_TOKENS = 64

POLICY = """
name = "budgets"
{state}
[[tiers]]
name = "small"
model = "openai/sim-small"
api_base = "builtin"
ability = 3.0
input_per_mtok = 100.0
output_per_mtok = 200.0

[[tiers]]
name = "large"
model = "openai/sim-large"
api_base = "builtin"
ability = 5.0
input_per_mtok = 200.0
output_per_mtok = 400.0

[[auth.keys]]
id = "bench"
sha256 = "{sha}"

[limits]
usd_per_day = {budget}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(policy: Path, src: str | None, workdir: Path) -> tuple[subprocess.Popen[Any], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--policy", str(policy), "--port", str(port),
         "--log-level", "warning", "--ledger", ""], cwd=src or workdir, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("tierwise serve did not start")
        time.sleep(0.1)


async def burst(urls: list[str], n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits,
                                 headers={"authorization": f"Bearer {KEY}"}) as client:
        return list(await asyncio.gather(*(
            client.post(urls[i % len(urls)] + "/v1/chat/completions", json={
                "model": "auto", "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": f"budget question number {i:04d}"}]})
            for i in range(n))))


def run(setup: str, n: int, budget: float, src: str | None, workdir: Path) -> dict[str, Any]:
    redis = None
    procs: list[subprocess.Popen[Any]] = []
    try:
        state = ""
        if setup != "memory":
            port = free_port()
            redis = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                 "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            state = f'state = "redis://127.0.0.1:{port}/0"'
        policy = workdir / f"{setup}.toml"
        policy.write_text(POLICY.format(state=state, budget=budget,
                                        sha=hashlib.sha256(KEY.encode()).hexdigest()))
        urls = []
        for _ in range(1 if setup == "memory" else 2):
            proc, url = start_serve(policy, src, workdir)
            procs.append(proc)
            urls.append(url)
        answers = asyncio.run(burst(urls, n))
        ok = [r for r in answers if r.status_code == 200]
        refused = sum(r.status_code == 429 for r in answers)
        time.sleep(0.5)  # the last charges land
        costs = [float(r.headers.get("x-tierwise-cost-usd", "nan")) for r in ok]
        left = httpx.post(urls[0] + "/v1/chat/completions", timeout=30, headers={
            "authorization": f"Bearer {KEY}"}, json={
                "model": "auto", "max_tokens": 1,
                "messages": [{"role": "user", "content": "left?"}]})
        remaining = float(left.headers.get("x-tierwise-budget-daily-remaining-usd", "nan"))
        spent = sum(costs)
        return {"setup": setup, "n": n, "admitted": len(ok), "refused": refused,
                "other": n - len(ok) - refused, "cost_each": spent / len(ok) if ok else 0.0,
                "spent": spent, "remaining": remaining, "over": max(spent - budget, 0.0)}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        if redis is not None:
            redis.terminate()
            redis.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--src", default=None, help="source tree to run the servers from")
    ap.add_argument("--out", default=None, help="append the markdown table to this file")
    args = ap.parse_args()
    from router.access.limits import estimate_cost

    body_bytes = len(b'{"model":"auto","max_tokens":64,"messages":[{"role":"user","content":'
                     b'"budget question number 0000"}]}')
    estimate = estimate_cost(body_bytes, MAX_TOKENS, 200.0, 400.0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(setup, args.n, args.budget, args.src, Path(tmp))
                for setup in ("memory", "redis, 2 replicas")]
    lines = [f"Source: {args.src or 'this tree'}; {args.n} requests at once, budget "
             f"${args.budget:g}/day, estimate reserved per request ~${estimate:.4f} "
             "(this tree's formula)", "",
             "| state | admitted | refused 429 | other | real cost each | spent | "
             "over the budget |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['admitted']} | {r['refused']} | {r['other']} | "
                     f"${r['cost_each']:.5f} | ${r['spent']:.4f} | ${r['over']:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
