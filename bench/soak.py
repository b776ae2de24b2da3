"""Bounded soak of the full proxy: a fixed request rate on loopback for a fixed time.

    /tmp/v1/bin/python bench/soak.py [--seconds 300] [--rate 20] [--stream-share 0.3]
                                     [--redis] [--out bench/SOAK.md]

Starts the proxy as its own process (router.serving.app.build_app: API keys, validation, limits,
budgets, the shared state, coalescing) on the embedded demo tiers (the built-in simulated
upstream on loopback), with one API key and limits high enough never to refuse. With --redis it
also starts a redis-server on a free loopback port (`--save '' --appendonly no`) and uses it as
the shared state. The shipped difficulty scorer is used when it loads, else a stand-in
(recorded in the report).

Requests are open-loop at --rate per second (aiohttp; a slow answer does not slow the arrivals),
a --stream-share of them streamed, over ~200 prompts with some repeats (so some coalesce). After
a warm-up (10% of the time, at least 5 s, not counted) it measures every request to its last byte
and counts as an error anything but a complete 200 (a stream must end with [DONE] and carry no
error event). It samples the proxy's RSS and open file descriptors, then writes --out (Markdown,
with machine and date) and the same numbers as JSON next to it. Exit status 1 if any error or
RSS grew 10% or more.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-soak-0123456789"

CHILD = """
import sys
sys.path.insert(0, {root!r})
import uvicorn
from policies import parse_policy
from router.serving.app import build_app
scorer = None
try:
    from classifiers import default_scorer
    default_scorer().score([{{"role": "user", "content": "probe"}}])
except Exception as exc:  # no shipped model yet: a stand-in, and say so
    sys.path.insert(0, {bench!r})
    from tierwise_serve import StandInScorer
    scorer = StandInScorer()
    print("soak: stand-in scorer (" + type(exc).__name__ + ")", file=sys.stderr, flush=True)
app = build_app(parse_policy(open({policy!r}).read()), scorer=scorer)
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", timeout_graceful_shutdown=10)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy_text(state: str) -> str:
    import hashlib

    demo = (ROOT / "policies" / "demo.toml").read_text()
    head, sep, tiers = demo.partition("[[tiers]]")
    sha = hashlib.sha256(KEY.encode()).hexdigest()
    return (f'{head}state = "{state}"\n{sep}{tiers}\n'
            f'[[auth.keys]]\nid = "soak"\nsha256 = "{sha}"\n'
            "[limits]\nrequests_per_minute = 1000000\ntokens_per_minute = 1000000000\n"
            "usd_per_day = 1000000.0\n")


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


PROMPTS = [f"Question {i}: explain topic number {i} in {w} words." for i in range(200)
           for w in (20,)]


class Load:
    def __init__(self, url: str, rate: float, stream_share: float, seed: int = 7) -> None:
        self.url = url + "/v1/chat/completions"
        self.rate = rate
        self.stream_share = stream_share
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.sent = 0

    async def one(self, session: aiohttp.ClientSession, body: dict[str, Any],
                  measure: bool) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(self.url, json=body) as r:
                text = await r.text()
                ok = r.status == 200 and (not body["stream"] or (
                    text.endswith("data: [DONE]\n\n") and '"error"' not in text))
                problem = None if ok else f"{r.status}: {text[:200]}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            problem = f"{type(exc).__name__}: {exc}"
        if measure:
            if problem:
                self.errors.append(problem)
            else:
                self.latencies.append(time.perf_counter() - t0)

    async def run(self, seconds: float, measure: bool) -> None:
        timeout = aiohttp.ClientTimeout(total=120)
        headers = {"authorization": f"Bearer {KEY}"}
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers,
                                         connector=conn) as session:
            tasks: set[asyncio.Task[None]] = set()
            start = time.perf_counter()
            n = 0
            while (elapsed := time.perf_counter() - start) < seconds:
                due = start + n / self.rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                body = {"model": "auto", "stream": self.rng.random() < self.stream_share,
                        "messages": [{"role": "user", "content": self.rng.choice(PROMPTS)}]}
                task = asyncio.create_task(self.one(session, body, measure))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                self.sent += measure
                del elapsed
            if tasks:
                await asyncio.gather(*tasks)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "os": platform.platform(), "cpu": cpu,
            "cores": str(os.cpu_count()), "python": platform.python_version()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second")
    ap.add_argument("--stream-share", type=float, default=0.3)
    ap.add_argument("--redis", action="store_true", help="shared state in a real redis-server")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "SOAK.md")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tierwise-soak-"))
    procs: list[subprocess.Popen[bytes]] = []
    state = "memory"
    try:
        if args.redis:
            binary = shutil.which("redis-server")
            if binary is None:
                print("soak: --redis needs redis-server (apt-get install redis-server)")
                return 2
            rport = free_port()
            procs.append(subprocess.Popen(
                [binary, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL))
            state = f"redis://127.0.0.1:{rport}/0"
        policy = tmp / "soak.toml"
        policy.write_text(policy_text(state))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        code = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench" / "proxy"),
                            policy=str(policy), port=port)
        log = (tmp / "proxy.log").open("wb")
        proxy = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log,
                                 stderr=subprocess.STDOUT)
        procs.append(proxy)
        deadline = time.monotonic() + 120
        while True:
            if proxy.poll() is not None or time.monotonic() > deadline:
                print((tmp / "proxy.log").read_text())
                return 2
            try:
                import urllib.request

                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        rss_ready, fds_ready = proc_status(proxy.pid)
        warm = max(5.0, args.seconds * 0.1)
        load = Load(url, args.rate, args.stream_share)
        asyncio.run(load.run(warm, measure=False))
        rss_start, fds_start = proc_status(proxy.pid)
        samples: list[tuple[float, float]] = []

        async def measured() -> None:
            async def sample() -> None:
                t0 = time.perf_counter()
                while True:
                    await asyncio.sleep(max(1.0, args.seconds / 30))
                    samples.append((time.perf_counter() - t0, proc_status(proxy.pid)[0]))

            sampler = asyncio.create_task(sample())
            await load.run(args.seconds, measure=True)
            sampler.cancel()

        t0 = time.perf_counter()
        asyncio.run(measured())
        wall = time.perf_counter() - t0
        time.sleep(1.0)
        rss_end, fds_end = proc_status(proxy.pid)
        scorer = "stand-in" if "stand-in scorer" in (tmp / "proxy.log").read_text() else "shipped"
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    growth = (rss_end - rss_start) / rss_start * 100
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "seconds": args.seconds, "rate": args.rate, "stream_share": args.stream_share,
        "state": "redis" if args.redis else "memory", "scorer": scorer,
        "requests": load.sent, "ok": len(load.latencies), "errors": len(load.errors),
        "achieved_rate": round(load.sent / wall, 2),
        "p50_ms": round(percentile(load.latencies, 0.50) * 1000, 1),
        "p90_ms": round(percentile(load.latencies, 0.90) * 1000, 1),
        "p99_ms": round(percentile(load.latencies, 0.99) * 1000, 1),
        "max_ms": round(max(load.latencies, default=float("nan")) * 1000, 1),
        "rss_ready_mb": round(rss_ready, 1), "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1), "rss_growth_pct": round(growth, 2),
        "fds_ready": fds_ready, "fds_start": fds_start, "fds_end": fds_end,
        "rss_samples_mb": [round(r, 1) for _, r in samples],
        "first_errors": load.errors[:5],
    }
    write_report(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples_mb"}, indent=1))
    return 0 if result["errors"] == 0 and growth < 10 else 1


def write_report(out: Path, r: dict[str, Any]) -> None:
    m = r["machine"]
    verdict = "PASS" if r["errors"] == 0 and r["rss_growth_pct"] < 10 else "FAIL"
    lines = [
        "# Soak: the full proxy at a fixed rate on loopback",
        "",
        f"Run `{' '.join(['bench/soak.py', *sys.argv[1:]])}` on {r['date']}: "
        f"{m['cpu']} ({m['cores']} cores), {m['os']}, Python {m['python']}.",
        "",
        "The proxy (router.serving.app.build_app: API key, validation, limits and budgets, shared "
        f"state = {r['state']}, coalescing) runs as its own process on the embedded demo tiers "
        "(built-in simulated upstream on loopback); difficulty scorer: "
        f"{r['scorer']}. Open-loop load from aiohttp, {r['stream_share']:.0%} streamed, "
        "~200 prompts with repeats; warm-up (10% of the time, at least 5 s) not counted.",
        "",
        "| measure | value |", "| --- | --- |",
        f"| duration | {r['seconds']:g} s at {r['rate']:g} req/s "
        f"(achieved {r['achieved_rate']:g}) |",
        f"| requests | {r['requests']} |",
        f"| **errors** | **{r['errors']}** (must be 0) |",
        f"| latency p50 / p90 / p99 / max | {r['p50_ms']} / {r['p90_ms']} / {r['p99_ms']} / "
        f"{r['max_ms']} ms |",
        f"| RSS ready / start / end | {r['rss_ready_mb']} / {r['rss_start_mb']} / "
        f"{r['rss_end_mb']} MB |",
        f"| **RSS growth** start -> end | **{r['rss_growth_pct']}%** (must be < 10%) |",
        f"| open fds ready / start / end | {r['fds_ready']} / {r['fds_start']} / "
        f"{r['fds_end']} |",
        f"| verdict | {verdict} |",
        "",
        "RSS samples during the run (MB): " + ", ".join(map(str, r["rss_samples_mb"])),
        "",
    ]
    if r["first_errors"]:
        lines += ["First errors:", "", *[f"- `{e}`" for e in r["first_errors"]], ""]
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
