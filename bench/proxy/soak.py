"""RSS over a long run: does a server's memory grow with the number of requests served?

    /tmp/v1/bin/python bench/proxy/soak.py [--target tierwise] [--requests 100000]
                                           [--chunk-seconds 20] [--max-minutes 10]

Starts the bench upstream and the target (as in run.py), then runs wrk at concurrency 32 in
chunks (alternating non-stream and stream), sampling the server's RSS after each chunk, until
--requests have been served or --max-minutes have passed. Prints the series and the RSS growth
per 10k requests over the second half (the first half includes warm-up: caches, pools, lazy
imports), and appends it to bench/proxy/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tierwise", choices=["tierwise", "tierwise+passthrough"])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--chunk-seconds", type=float, default=20)
    ap.add_argument("--max-minutes", type=float, default=10)
    ap.add_argument("--src", choices=["head", "worktree"], default="head")
    args = ap.parse_args()
    py = sys.executable
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           **bench.tierwise_source(args.src)}
    script, port = (("tierwise_serve.py", bench.TIERWISE_PORT) if args.target == "tierwise"
                    else ("passthrough_proxy.py", bench.TW_PASS_PORT))
    upstream = bench.Server("upstream", [py, str(HERE / "upstream.py"), "--port",
                                         str(bench.UPSTREAM_PORT)],
                            f"http://127.0.0.1:{bench.UPSTREAM_PORT}/healthz",
                            f"http://127.0.0.1:{bench.UPSTREAM_PORT}/v1/chat/completions", "x")
    server = bench.Server(args.target, [py, str(HERE / script), "--policy",
                                        str(HERE / "bench-policy.toml"), "--port", str(port)],
                          f"http://127.0.0.1:{port}/healthz",
                          f"http://127.0.0.1:{port}/v1/chat/completions", "auto", env=env)
    series = []
    t0 = time.monotonic()
    try:
        upstream.start()
        server.start()
        assert server.proc is not None
        idle = bench.rss_mb(server.proc.pid)
        server.check()
        series.append((0, bench.rss_mb(server.proc.pid)))
        print(f"idle RSS {idle:.0f} MB; after first answers {series[0][1]:.0f} MB", flush=True)
        served, k = 0, 0
        while served < args.requests and time.monotonic() - t0 < args.max_minutes * 60:
            r = bench.wrk(server, 32, args.chunk_seconds, stream=bool(k % 2))
            served += r["requests"]
            k += 1
            series.append((served, bench.rss_mb(server.proc.pid)))
            print(f"{served:7d} requests  RSS {series[-1][1]:6.1f} MB  ({r['rps']:.0f} req/s, "
                  f"errors {r['errors']})", flush=True)
    finally:
        server.stop()
        upstream.stop()
    half = [p for p in series if p[0] >= series[-1][0] / 2]
    growth = None
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        n = len(half)
        mx = sum(p[0] for p in half) / n
        my = sum(p[1] for p in half) / n
        sxx = sum((p[0] - mx) ** 2 for p in half)
        growth = sum((p[0] - mx) * (p[1] - my) for p in half) / sxx * 10_000 if sxx else None
    res = {"target": args.target, "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "commit": bench.sh(["git", "-C", str(bench.REPO), "rev-parse", "--short", "HEAD"]),
           "idle_rss_mb": idle, "series": series, "requests": series[-1][0],
           "rss_growth_mb_per_10k_second_half": growth, "load": os.getloadavg()[0]}
    print(f"served {res['requests']} requests; RSS {series[0][1]:.0f} -> {series[-1][1]:.0f} MB;"
          f" growth over the second half: "
          f"{'n/a' if growth is None else f'{growth:.2f} MB per 10k requests'}")
    path = HERE / "soak.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(res)
    path.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
