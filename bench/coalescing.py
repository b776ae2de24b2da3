"""Thundering herd: 1,000 requests over 50 distinct prompts arriving at once, with and without
coalescing. Upstream calls made, client latency, and the proxy's CPU.

    /tmp/v1/bin/python bench/coalescing.py [--requests 1000] [--prompts 50] [--delay-ms 300]
                                           [--stream] [--src head|worktree]

Starts bench/proxy/upstream.py with a fixed answer delay (an LLM takes time, so identical
requests overlap; it counts the chat calls it serves) and `tierwise serve` (bench/proxy/
tierwise_serve.py) on a policy pointing at it, then fires all requests at once from this process
(aiohttp, one connection per request) in three configurations:

  on          policy coalesce = true (bench/coalesce-on.toml)
  off-header  same server, every request sends `x-tierwise-coalesce: off` (per-request opt-out)
  off-policy  policy coalesce = false (bench/coalesce-off.toml)

and writes bench/coalescing.md and .json (bench/coalescing-stream.* with --stream).
A configuration whose responses never say `x-tierwise-coalesced: yes` is reported as
"coalescing not active in this build" rather than as a result about coalescing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "proxy"))

import run as bench  # noqa: E402

UPSTREAM_PORT = 18721
PROXY_PORT = 18722

POLICY = """# bench/coalescing.py: two tiers on the delayed bench upstream (127.0.0.1:{port}).
name = "coalesce-bench"
alias = "auto"
quality_target = 0.7
min_confidence = 0.5
max_escalations = 1
coalesce = {coalesce}
timeout_s = 60

[[tiers]]
name = "small"
model = "openai/bench-small"
api_base = "http://127.0.0.1:{port}/v1"
ability = 1.0
input_per_mtok = 0.15
output_per_mtok = 0.60

[[tiers]]
name = "large"
model = "openai/bench-large"
api_base = "http://127.0.0.1:{port}/v1"
ability = 2.6
input_per_mtok = 2.50
output_per_mtok = 10.00
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def herd(url: str, n: int, prompts: int, stream: bool, opt_out: bool) -> dict:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"Content-Type": "application/json"}
    if opt_out:
        headers["x-tierwise-coalesce"] = "off"
    latencies: list[float] = []
    coalesced = 0
    errors: dict[str, int] = {}
    start = asyncio.Event()

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal coalesced
        body = {"model": "auto", "max_tokens": 64, "stream": stream, "messages": [
            {"role": "user", "content": f"Question {i % prompts}: why is the sky blue?"}]}
        data = json.dumps(body).encode()
        await start.wait()
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=data, headers=headers) as resp:
                raw = await resp.read()
                if resp.status != 200 or b"simulated answer" not in raw.replace(b'"', b""):
                    if resp.status == 200 and stream and b"simulated" in raw:
                        pass
                    else:
                        key = f"HTTP {resp.status}"
                        errors[key] = errors.get(key, 0) + 1
                        return
                if resp.headers.get("x-tierwise-coalesced", "no") not in ("no", ""):
                    coalesced += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(one(i, session)) for i in range(n)]
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return {"ok": len(latencies), "errors": errors, "coalesced_responses": coalesced,
            "wall_s": wall, "p50_ms": pct(latencies, 0.5) * 1000,
            "p99_ms": pct(latencies, 0.99) * 1000, "max_ms": max(latencies, default=0) * 1000}


def upstream_stats() -> dict:
    return json.loads(bench.http("GET", f"http://127.0.0.1:{UPSTREAM_PORT}/stats")[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--delay-ms", type=float, default=300.0)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--src", choices=["head", "worktree"], default="head")
    args = ap.parse_args()
    py = sys.executable
    src_env = bench.tierwise_source(args.src)
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", **src_env}
    policies = {}
    for name, flag in (("on", "true"), ("off", "false")):
        path = Path(f"/tmp/tierwise-coalesce-{name}.toml")
        path.write_text(POLICY.format(port=UPSTREAM_PORT, coalesce=flag))
        policies[name] = path
    upstream = bench.Server("upstream-delayed", [py, str(HERE / "proxy" / "upstream.py"),
                                                 "--port", str(UPSTREAM_PORT), "--delay-ms",
                                                 str(args.delay_ms)],
                            f"http://127.0.0.1:{UPSTREAM_PORT}/healthz",
                            f"http://127.0.0.1:{UPSTREAM_PORT}/v1/chat/completions", "x")
    url = f"http://127.0.0.1:{PROXY_PORT}/v1/chat/completions"
    configs = [("on", "on", False), ("off-header", "on", True), ("off-policy", "off", False)]
    rows = []
    try:
        upstream.start()
        for label, policy, opt_out in configs:
            server = bench.Server(
                f"tierwise-coalesce-{label}",
                [py, str(HERE / "proxy" / "tierwise_serve.py"), "--policy",
                 str(policies[policy]), "--port", str(PROXY_PORT), "--log-level", "warning"],
                f"http://127.0.0.1:{PROXY_PORT}/healthz", url, "auto", env=env)
            try:
                server.start()
                server.check()  # imports litellm, warms the path
                assert server.proc is not None
                bench.http("POST", f"http://127.0.0.1:{UPSTREAM_PORT}/stats/reset")
                c0 = bench.cpu_s(server.proc.pid)
                r = asyncio.run(herd(url, args.requests, args.prompts, args.stream, opt_out))
                r["proxy_cpu_s"] = bench.cpu_s(server.proc.pid) - c0
                stats = upstream_stats()
                r.update(config=label, upstream_calls=stats["calls"],
                         upstream_max_in_flight=stats["max_in_flight"])
                rows.append(r)
                print(f"[{label}] upstream calls {r['upstream_calls']}, coalesced responses "
                      f"{r['coalesced_responses']}, ok {r['ok']}, errors {r['errors']}, "
                      f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, wall "
                      f"{r['wall_s']:.2f} s, proxy CPU {r['proxy_cpu_s']:.2f} s", flush=True)
            finally:
                server.stop()
    finally:
        upstream.stop()
    commit = bench.sh(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    active = any(r["coalesced_responses"] for r in rows)
    res = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
           "commit": commit, "src": args.src, "requests": args.requests,
           "prompts": args.prompts, "delay_ms": args.delay_ms, "stream": args.stream,
           "load": os.getloadavg()[0], "coalescing_active": active, "rows": rows}
    stem = "coalescing-stream" if args.stream else "coalescing"
    (HERE / f"{stem}.json").write_text(json.dumps(res, indent=1))
    lines = [
        "# Coalescing under a thundering herd",
        "",
        f"Generated by `python bench/coalescing.py{' --stream' if args.stream else ''}` on "
        f"{res['date']} UTC, tierwise {'commit' if args.src == 'head' else 'working tree at'} "
        f"{commit}; {args.requests} requests over {args.prompts} distinct prompts released at "
        f"once (one connection each), upstream answering after {args.delay_ms:.0f} ms; "
        f"{'stream' if args.stream else 'non-stream'}; 2 cores shared with the client and the "
        f"upstream; load average {res['load']:.2f} at the end.",
        "",
        "| configuration | upstream calls | responses marked coalesced | ok | errors | "
        "p50 ms | p99 ms | max ms | herd wall s | proxy CPU s |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['upstream_calls']} | {r['coalesced_responses']} | "
                     f"{r['ok']} | {r['errors'] or 0} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['wall_s']:.2f} | "
                     f"{r['proxy_cpu_s']:.2f} |")
    lines += ["", "Ideal with coalescing: upstream calls = distinct prompts "
              f"({args.prompts}); without: one per request ({args.requests}).", ""]
    if not active:
        lines += ["**Coalescing is not active in this build**: no response carried "
                  "`x-tierwise-coalesced: yes` and the upstream served one call per request in "
                  "every configuration. The rows are the no-coalescing baseline; the `on` row "
                  "becomes the real measurement once issue 4's coalescing (policy `coalesce`, "
                  "header `x-tierwise-coalesce: off`) is committed: rerun this script.", ""]
    (HERE / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
