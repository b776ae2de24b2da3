"""A/B: CPU per request and added latency of two tierwise source trees, measured alternately.

    /tmp/v1/bin/python bench/proxy/ab.py OLD_SRC NEW_SRC [--bursts 8] [--seconds 2] [--conc 1]

On a shared machine absolute numbers drift by tens of percent within minutes (other jobs,
and where the scheduler puts wrk, the upstream and the proxy on the 2 cores), so run.py's
cells taken minutes apart cannot show a 10 % change. This starts the bench upstream and two
`tierwise serve` processes (bench/proxy/tierwise_serve.py, bench policy, `--log-level
warning`), one per source tree (each put first on PYTHONPATH, e.g. a `git archive` of a
commit's router/ policies/ classifiers/), and drives them with wrk in short bursts, A B A B ...
(the order flipped every other round), so drift hits both alike. Per mode it prints the server
CPU per request (median and min over bursts; from /proc, the process and its threads), the
median per-burst ratio B/A, and p50 latency minus the upstream's own.

    git archive HEAD~1 router policies classifiers | tar -x -C /tmp/a
    git archive HEAD router policies classifiers | tar -x -C /tmp/b
    python bench/proxy/ab.py /tmp/a /tmp/b

--policy-a/--policy-b compare policies instead (e.g. one that sets energy_model on the tiers);
--pin puts the servers on CPU 0 and the upstream and wrk on CPU 1; --nice -10 (as root) runs
them ahead of other work on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="source tree A (router/, policies/, classifiers/)")
    ap.add_argument("b", help="source tree B")
    ap.add_argument("--bursts", type=int, default=8, help="bursts per server and mode")
    ap.add_argument("--seconds", type=int, default=2, help="seconds per burst")
    ap.add_argument("--conc", type=int, default=1, help="wrk connections")
    ap.add_argument("--modes", default="json,stream")
    ap.add_argument("--policy-a", help="default: bench/proxy/bench-policy.toml")
    ap.add_argument("--policy-b", help="default: bench/proxy/bench-policy.toml")
    ap.add_argument("--port-offset", type=int, default=0, help="as run.py --port-offset")
    ap.add_argument("--pin", action="store_true",
                    help="servers on CPU 0; this script, the upstream and wrk on CPU 1")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the servers, the upstream and wrk (e.g. -10 as root, "
                         "ahead of other work on a shared machine), as run.py --nice")
    args = ap.parse_args()
    bench.NICE = args.nice
    bench.shift_ports(args.port_offset)
    args.policy_a = args.policy_a or str(bench.POLICY)
    args.policy_b = args.policy_b or str(bench.POLICY)
    for src in (args.a, args.b):
        if not (Path(src) / "router" / "__init__.py").is_file():
            sys.exit(f"ab.py: {src} has no router/ package (it would silently run the installed "
                     "tierwise instead)")
    py = sys.executable
    if args.pin:
        os.sched_setaffinity(0, {1})  # inherited by the upstream and wrk

    def server(name: str, src: str, port: int, policy: str) -> bench.Server:
        pin = ["taskset", "-c", "0"] if args.pin else []
        return bench.Server(
            name, [*pin, py, str(HERE / "tierwise_serve.py"), "--policy", policy, "--host",
                   "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/v1/chat/completions",
            "auto", env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                         "PYTHONPATH": os.path.abspath(src)})

    upstream = bench.Server(
        "upstream", [py, str(HERE / "upstream.py"), "--port", str(bench.UPSTREAM_PORT)],
        f"http://127.0.0.1:{bench.UPSTREAM_PORT}/healthz",
        f"http://127.0.0.1:{bench.UPSTREAM_PORT}/v1/chat/completions", "bench-small")
    a = server("A", args.a, bench.TIERWISE_PORT, args.policy_a)
    b = server("B", args.b, bench.TW_PASS_PORT, args.policy_b)
    try:
        upstream.start()
        for s in (a, b):
            s.start()
            s.check()
            s.wait_warm()
            if s.log is not None and "stand-in scorer" in s.log.read_text():
                print(f"{s.name}: STAND-IN SCORER (classifiers.default_scorer does not load)")
        print(f"load average {os.getloadavg()[0]:.2f}; A={args.a} B={args.b}; "
              f"concurrency {args.conc}, {args.bursts} x {args.seconds} s bursts")
        for mode in args.modes.split(","):
            stream = mode == "stream"
            for s in (a, b, upstream):
                bench.wrk(s, args.conc, 1, stream)  # warm-up
            cells: dict[str, list[dict]] = {"A": [], "B": [], "U": []}
            for i in range(args.bursts):
                order = [("A", a), ("B", b)] if i % 2 == 0 else [("B", b), ("A", a)]
                for key, s in [*order, ("U", upstream)]:
                    cells[key].append(bench.wrk(s, args.conc, args.seconds, stream))

            def cpu(key: str, cells: dict[str, list[dict]] = cells) -> list[float]:
                return [r["server_cpu_ms_per_req"] for r in cells[key]]

            def p50(key: str, cells: dict[str, list[dict]] = cells) -> float:
                return statistics.median(r["p50_ms"] for r in cells[key])

            def p99(key: str, cells: dict[str, list[dict]] = cells) -> float:
                return statistics.median(r["p99_ms"] for r in cells[key])

            def bursts(key: str, cells: dict[str, list[dict]] = cells) -> list[float]:
                return sorted(round(r["p99_ms"], 2) for r in cells[key])

            ratio = statistics.median(y / x for x, y in zip(cpu("A"), cpu("B"), strict=True))
            print(f"{mode:6s} CPU ms/req median A {statistics.median(cpu('A')):.3f} "
                  f"B {statistics.median(cpu('B')):.3f} (min A {min(cpu('A')):.3f} "
                  f"B {min(cpu('B')):.3f}), B/A {ratio:.3f} | added p50 ms "
                  f"A {p50('A') - p50('U'):.3f} B {p50('B') - p50('U'):.3f} | added p99 ms "
                  f"(median of bursts) A {p99('A') - p99('U'):.3f} B {p99('B') - p99('U'):.3f}; "
                  f"p99 per burst A {bursts('A')} B {bursts('B')} U {bursts('U')}",
                  flush=True)
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        for s in (a, b, upstream):
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
