"""The slowest 1 % of requests at concurrency 1, taken apart (bench/PROFILE.md section 8).

    python bench/proxy/tail.py --seconds 6            # json and stream, HEAD's code
    python bench/proxy/tail.py --src worktree --env TIERWISE_X=1

Starts bench/proxy/upstream.py and `tierwise serve` (bench/proxy/tierwise_serve.py) with
TIERWISE_TAIL_TRACE=1 (bench/proxy/tail_trace.py times every request's phases inside the
server), drives it with wrk at concurrency 1 as bench/proxy/run.py does, then fetches the
trace and prints, for all requests and for the slowest 1 % by time inside the server: the
loop thread's CPU and run-queue delay, the upstream call, the loop's other waiting, the other
threads' CPU meanwhile, and how many of them overlapped a garbage collection, an accounting
batch or a ledger write (with the overlapped milliseconds). wrk's own p50/p99 are printed
alongside: the server-side numbers miss only uvicorn's read/parse/write and the kernel.
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

import run  # noqa: E402  (bench/proxy/run.py: servers, wrk)


def overlap(t0: int, t1: int, spans: list[list[int]]) -> int:
    return sum(max(0, min(t1, b) - max(t0, a)) for a, b, *_ in spans)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def analyse(tr: dict, wrk_row: dict, label: str) -> dict:
    reqs = tr["requests"]
    rows = []
    for t0, t1, gap, cpu, runq, other, up in reqs:
        wall = t1 - t0
        rows.append({
            "wall": wall / 1e6, "gap": gap / 1e6, "cpu": cpu / 1e6, "runq": runq / 1e6,
            "upstream": up / 1e6, "other_cpu": other / 1e6,
            # off the CPU and not queued for one: waiting for the upstream, the client or
            # the GIL (the upstream column overlaps this and runq)
            "wait": max(0, wall - cpu - runq) / 1e6,
            "gc": overlap(t0, t1, tr["gcs"]) / 1e6,
            "batch": overlap(t0, t1, tr["batches"]) / 1e6,
            "write": overlap(t0, t1, tr["writes"]) / 1e6,
            "gen2": any(g == 2 and min(t1, b) > max(t0, a) for a, b, g in tr["gcs"]),
        })
    rows.sort(key=lambda r: r["wall"])
    n = len(rows)
    slow = rows[-max(1, n // 100):]
    keys = ["wall", "cpu", "runq", "upstream", "wait", "other_cpu", "gc", "batch", "write"]

    def mean(rs: list[dict], k: str) -> float:
        return sum(r[k] for r in rs) / len(rs) if rs else 0.0

    def share(rs: list[dict], k: str) -> float:
        return sum(1 for r in rs if r[k] > 0) / len(rs) if rs else 0.0

    out = {"label": label, "requests": n, "wrk_p50_ms": wrk_row["p50_ms"],
           "wrk_p99_ms": wrk_row["p99_ms"], "wrk_rps": wrk_row["rps"],
           "cpu_ms_per_req": wrk_row["server_cpu_ms_per_req"],
           "server_p50_ms": pct([r["wall"] for r in rows], 0.5),
           "server_p99_ms": pct([r["wall"] for r in rows], 0.99),
           "gap_p50_ms": pct([r["gap"] for r in rows], 0.5),
           "gap_p99_ms": pct([r["gap"] for r in rows], 0.99),
           "all": {k: mean(rows, k) for k in keys},
           "slow": {k: mean(slow, k) for k in keys},
           "overlapping": {k: [share(rows, k), share(slow, k)] for k in ("gc", "batch", "write")},
           "gen2_in_slow": sum(r["gen2"] for r in slow),
           "gcs": len(tr["gcs"]), "batches": len(tr["batches"]), "writes": len(tr["writes"]),
           "gc_by_gen": {g: [sum(1 for *_, x in tr["gcs"] if x == g),
                             max([(b - a) / 1e6 for a, b, x in tr["gcs"] if x == g] or [0])]
                         for g in (0, 1, 2)},
           "batch_ms": sorted((b - a) / 1e6 for a, b, _ in tr["batches"])[-5:],
           "write_ms": sorted((b - a) / 1e6 for a, b, _ in tr["writes"])[-5:],
           "census": tr.get("census"), "slowest": rows[-8:]}
    return out


def show(a: dict) -> None:
    print(f"\n== {a['label']}: {a['requests']} requests, wrk p50 {a['wrk_p50_ms']:.2f} / p99 "
          f"{a['wrk_p99_ms']:.2f} ms, {a['wrk_rps']:.0f} req/s, server CPU "
          f"{a['cpu_ms_per_req']:.3f} ms/req")
    print(f"   inside the app: p50 {a['server_p50_ms']:.3f} p99 {a['server_p99_ms']:.3f} ms; "
          f"gap between requests p50 {a['gap_p50_ms']:.3f} p99 {a['gap_p99_ms']:.3f} ms")
    print("   ms (mean)        " + " ".join(f"{k:>9}" for k in a["all"]))
    for part in ("all", "slow"):
        print(f"   {part + ' requests' if part == 'all' else 'slowest 1 %':<17}"
              + " ".join(f"{v:9.3f}" for v in a[part].values()))
    print("   share overlapping (all / slowest 1 %): " + ", ".join(
        f"{k} {x:.1%} / {y:.1%}" for k, (x, y) in a["overlapping"].items())
          + f"; gen-2 collections in the slowest: {a['gen2_in_slow']}")
    print("   collections per generation [count, longest ms]: " + str(a["gc_by_gen"]))
    print(f"   {a['gcs']} collections, {a['batches']} accounting batches (longest ms "
          f"{[round(x, 2) for x in a['batch_ms']]}), {a['writes']} ledger writes (longest ms "
          f"{[round(x, 2) for x in a['write_ms']]})")
    if a.get("census"):
        print(f"   full collections' census: {a['census'][:2]}")
    for r in a["slowest"][-5:]:
        print("     " + " ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                 for k, v in r.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--src", default="head", help="head, worktree (as run.py) or a directory "
                    "with router/ policies/ classifiers/ (e.g. a git archive of a commit)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    ap.add_argument("--out", help="write the analysis as JSON here")
    ap.add_argument("--nice", type=int, default=0, help="as run.py --nice")
    ap.add_argument("--port-offset", type=int, default=0, help="as run.py --port-offset")
    args = ap.parse_args()
    run.shift_ports(args.port_offset)
    run.NICE = args.nice
    py = sys.executable
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "TIERWISE_TAIL_TRACE": "1",
           **(run.tierwise_source(args.src) if args.src in ("head", "worktree")
              else {"PYTHONPATH": os.path.abspath(args.src)}),
           **dict(e.split("=", 1) for e in args.env)}
    up = run.Server("upstream", [py, str(HERE / "upstream.py"), "--port", str(run.UPSTREAM_PORT)],
                    f"http://127.0.0.1:{run.UPSTREAM_PORT}/healthz",
                    f"http://127.0.0.1:{run.UPSTREAM_PORT}/v1/chat/completions", "bench-small")
    base = f"http://127.0.0.1:{run.TIERWISE_PORT}"
    tw = run.Server("tierwise", [py, str(HERE / "tierwise_serve.py"), "--policy",
                                 str(run.POLICY), "--host", "127.0.0.1",
                                 "--port", str(run.TIERWISE_PORT), "--log-level", "warning"],
                    base + "/healthz", base + "/v1/chat/completions", "auto", env=env)
    load0 = os.getloadavg()
    results = []
    try:
        up.start()
        tw.start()
        tw.check()
        tw.wait_warm()
        run.wrk(tw, 32, 2, False)  # warm-up, as run.py
        run.wrk(tw, 32, 2, True)
        for stream in (False, True):
            run.http("GET", base + "/__tail")  # start over
            row = run.wrk(tw, 1, args.seconds, stream)
            trace = json.loads(run.http("GET", base + "/__tail", timeout=60)[1])
            a = analyse(trace, row, "stream" if stream else "json")
            show(a)
            results.append(a)
    finally:
        tw.stop()
        up.stop()
    load1 = os.getloadavg()
    print(f"\nload average at start {load0[0]:.2f} {load0[1]:.2f}, at end {load1[0]:.2f} "
          f"{load1[1]:.2f}; {time.strftime('%H:%M', time.gmtime())} UTC")
    if args.out:
        Path(args.out).write_text(json.dumps({"load": [load0, load1], "env": args.env,
                                              "src": args.src, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
