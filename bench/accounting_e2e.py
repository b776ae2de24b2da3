"""Proxy CPU per request with and without accounting: `tierwise serve` from this checkout vs
from a commit before accounting was wired in (a git worktree), same upstream, same load.

    /tmp/v1/bin/python bench/accounting_e2e.py [--base a4a2d38] [--n 3000] [--rounds 3]

Starts bench/proxy/upstream.py, then each server in turn on the bench policy (HEAD's copy adds
`energy_model` so ecologits really runs, and a ledger in a temp dir), sends `--n` non-stream
requests (different prompts) with aiohttp after a warm-up (HEAD also once without
`energy_model`: accounting without the ecologits estimate), and reads the server's CPU time from
/proc before and after. Prints and writes bench/accounting_e2e.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(url: str, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


async def load(base: str, n: int, concurrency: int, tag: str) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> None:
            body = {"model": "auto", "messages": [{"role": "user", "content": f"{tag} q {i}"}]}
            async with sem, session.post(f"{base}/v1/chat/completions", json=body) as r:
                await r.read()
                assert r.status == 200, r.status

        await asyncio.gather(*(one(i) for i in range(n)))


def policy(upstream: str, accounting: bool, energy: bool = True) -> str:
    text = (HERE / "proxy" / "bench-policy.toml").read_text()
    text = text.replace("http://127.0.0.1:18701", upstream)
    if accounting and energy:
        text = text.replace('model = "openai/bench-small"\n',
                            'model = "openai/bench-small"\nenergy_model = "gpt-4o-mini"\n')
        text = text.replace('model = "openai/bench-large"\n',
                            'model = "openai/bench-large"\nenergy_model = "gpt-4o"\n')
    if accounting:
        text = 'zone = "USA"\n' + text
    return text


def run(source: Path, upstream: str, accounting: bool, n: int, concurrency: int,
        tmp: Path, energy: bool = True) -> dict[str, float]:
    port = free_port()
    pol = tmp / f"policy-{accounting}-{energy}.toml"
    pol.write_text(policy(upstream, accounting, energy))
    cmd = [sys.executable, "-m", "router", "serve", "--policy", str(pol), "--port", str(port),
           "--log-level", "warning"]
    if accounting:
        cmd += ["--ledger", str(tmp / "ledger.db")]
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen(cmd, cwd=tmp, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait(base + "/readyz")
        asyncio.run(load(base, 300, concurrency, "warm"))
        time.sleep(1)
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        asyncio.run(load(base, n, concurrency, "run"))
        time.sleep(1)  # let the accounting and ledger threads finish their queues
        c1, t1 = cpu_s(proc.pid), time.monotonic()
    finally:
        proc.terminate()
        proc.wait(30)
    return {"cpu_ms_per_request": round((c1 - c0) / n * 1000, 3),
            "requests_per_s": round(n / (t1 - t0 - 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="a4a2d38", help="a commit before accounting")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    uport = free_port()
    up = subprocess.Popen([sys.executable, str(HERE / "proxy" / "upstream.py"), "--port",
                           str(uport)])
    upstream = f"http://127.0.0.1:{uport}"
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree),
                        args.base], check=True, capture_output=True)
        try:
            wait(upstream + "/healthz")
            rounds: dict[str, list[dict[str, float]]] = {"base": [], "head": [],
                                                         "head_without_energy": []}
            for _ in range(args.rounds):  # interleaved: drifting machine load hits all
                rounds["base"].append(run(worktree, upstream, False, args.n, args.concurrency,
                                          Path(tmp)))
                rounds["head"].append(run(REPO, upstream, True, args.n, args.concurrency,
                                          Path(tmp)))
                # no energy_model: ecologits does not know the bench models, no estimate
                rounds["head_without_energy"].append(run(
                    REPO, upstream, True, args.n, args.concurrency, Path(tmp), energy=False))
            results: dict[str, Any] = {k: {
                "cpu_ms_per_request_median": statistics.median(
                    r["cpu_ms_per_request"] for r in v),
                "runs": v} for k, v in rounds.items()}
        finally:
            up.terminate()
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(worktree)], check=True)
    results["added_cpu_ms_per_request"] = round(
        results["head"]["cpu_ms_per_request_median"]
        - results["base"]["cpu_ms_per_request_median"], 3)
    results.update(base_commit=args.base, n=args.n, concurrency=args.concurrency)
    print(json.dumps(results, indent=2))
    (HERE / "accounting_e2e.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
