"""Start-up: `tierwise serve` time to ready and to the first routed answer, `tierwise route` wall
time, and what their imports cost.

    /tmp/v1/bin/python bench/proxy/startup.py [--repeats 5] [--src head|worktree]

- serve: process start -> GET /healthz answers 200 ("ready"), then -> first POST
  /v1/chat/completions with model "auto" (sent at once) answered ("first answer"), then ->
  GET /readyz 200 (the server's own "warm" signal, when it has one), on bench/proxy/
  bench-policy.toml (bench upstream) and on the embedded demo policy (built-in simulator).
- route: `tierwise route "What is 2+2?"` wall time, process start to exit.
- imports: `python -X importtime` of the route and serve paths, largest cumulative imports.
Medians of --repeats runs. Like run.py, tierwise runs through bench/proxy/tierwise_serve.py,
which is the real CLI, with a stand-in scorer only while the shipped one cannot load (say so in
the output). Writes bench/proxy/startup.json and prints a markdown block for RESULTS.md.

    /tmp/v1/bin/python bench/proxy/startup.py --route [--repeats 10] [--src head|worktree]

only times `tierwise route "What is 2+2?"` (target <= 300 ms): wall and CPU (user+sys) of the
real CLI, the interpreter floor, where the time goes (each step of `cmd_route` timed in a fresh
process, median over the runs), the largest imports, and which heavy modules the command
loaded (none of litellm, asyncio, aiohttp, uvicorn, starlette should). Writes
bench/proxy/route_cli.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

PORT = 18731


def time_serve(policy: list[str], env: dict) -> tuple[float, float, str, float | None]:
    py = sys.executable
    argv = [py, str(HERE / "tierwise_serve.py"), *policy, "--port", str(PORT),
            "--log-level", "warning"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=bench.REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        while True:
            try:
                if bench.http("GET", f"http://127.0.0.1:{PORT}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                tail = proc.stderr.read()[-500:] if proc.stderr else b""
                raise RuntimeError(f"serve did not come up: {tail!r}")
            time.sleep(0.005)
        ready = time.monotonic() - t0
        status, raw, _ = bench.http("POST", f"http://127.0.0.1:{PORT}/v1/chat/completions",
                                    {"model": "auto", "messages": [
                                        {"role": "user", "content": "What is 2+2?"}]},
                                    timeout=60)
        first = time.monotonic() - t0
        if status != 200:
            raise RuntimeError(f"first answer failed {status}: {raw[:300]!r}")
        warm = None  # /readyz: 200 once the server has loaded what requests need (if it has one)
        while time.monotonic() - t0 < 90:
            code = bench.http("GET", f"http://127.0.0.1:{PORT}/readyz", timeout=5)[0]
            if code == 200:
                warm = time.monotonic() - t0
                break
            if code == 404:
                break
            time.sleep(0.01)
    finally:
        os.killpg(os.getpgid(proc.pid), 15)
        proc.wait(10)
        err = proc.stderr.read().decode() if proc.stderr else ""
    m = re.search(r"stand-in scorer \((.*)\)", err)
    return ready, first, (f"stand-in ({m.group(1)})" if m else "shipped"), warm


def time_route(env: dict, real_cli: bool) -> tuple[float, int]:
    argv = ([str(Path(sys.executable).parent / "tierwise")] if real_cli else
            [sys.executable, str(HERE / "tierwise_serve.py")]) + ["route", "What is 2+2?"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=bench.REPO, env={**os.environ, **env},
                          capture_output=True, timeout=60)
    return time.monotonic() - t0, proc.returncode


def importtime(code: str, env: dict) -> list[tuple[float, str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=bench.REPO,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 3:  # top-level imports (and their first children)
            rows.append((int(m.group(2)) / 1e6, m.group(4)))
    return sorted(rows, reverse=True)[:8]


# Each step of `tierwise route` (router/cli.py cmd_route), timed in a fresh interpreter.
ROUTE_STEPS = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import router.cli
mark("import router.cli (policies, argparse, json)")
try:
    parser = router.cli.build_parser("route")
except TypeError:  # before commit "CLI: ... lazy": no command argument
    parser = router.cli.build_parser()
args = parser.parse_args(["route", "What is 2+2?"])
mark("build the parser, parse argv")
try:
    from router.decider import Decider
except ImportError:  # before router.decider existed, cmd_route used the Router
    from router.engine import Router as Decider
decider = Decider(args.policy)
mark("import router.decider, load the policy")
import numpy
mark("import numpy")
import classifiers.scorer
mark("import classifiers.scorer (its other imports)")
decider.scorer
mark("build the scorer (classifiers.default_scorer)")
decision = decider.route(args.text)
mark("score and decide")
heavy = [m for m in ("litellm", "asyncio", "aiohttp", "uvicorn", "starlette", "router.engine",
                     "router.serving.proxy", "onnxruntime", "tiktoken", "sklearn", "scipy")
         if m in sys.modules]
print("STEPS " + json.dumps(([(n, 1000 * (t - p)) for (_, p), (n, t) in zip(marks, marks[1:])],
                             heavy)))
"""


def route_only(args: argparse.Namespace, env: dict) -> int:
    """`tierwise route` alone: wall and CPU of the real CLI, its steps, its imports."""
    cli = str(Path(sys.executable).parent / "tierwise")
    load0 = os.getloadavg()[0]
    floor = []
    for _ in range(args.repeats):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor.append(time.monotonic() - t0)
    walls, cpus, codes = [], [], set()
    for _ in range(args.repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.run([cli, "route", "What is 2+2?"], cwd="/", env={**os.environ, **env},
                              capture_output=True, timeout=60)
        walls.append(time.monotonic() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        codes.add(proc.returncode)
    steps: dict[str, list[float]] = {}
    heavy: list[str] = []
    for _ in range(args.repeats):
        steps_proc = subprocess.run([sys.executable, "-c", ROUTE_STEPS], cwd="/",
                                    env={**os.environ, **env}, capture_output=True, text=True,
                                    timeout=60)
        m = re.search(r"^STEPS (.*)$", steps_proc.stdout, re.M)
        if not m:
            raise RuntimeError(f"route steps failed: {steps_proc.stderr[-800:]}")
        rows, heavy = json.loads(m.group(1))
        for name, ms in rows:
            steps.setdefault(name, []).append(ms)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "src": args.src,
           "commit": bench.sh(["git", "-C", str(bench.REPO), "rev-parse", "--short", "HEAD"]),
           "repeats": args.repeats, "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
           "wall_s": {"median": statistics.median(walls), "min": min(walls)},
           "cpu_s": {"median": statistics.median(cpus), "min": min(cpus)},
           "exit_codes": sorted(codes),
           "python_floor_s": statistics.median(floor),
           "steps_ms": {k: statistics.median(v) for k, v in steps.items()},
           "heavy_modules_loaded": heavy,
           # set: no .pyc files are written, so every run compiles tierwise's own modules
           "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
           "imports": importtime("import router.cli, router.decider, policies", env)}
    print(f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}; {args.repeats} runs each")
    print(f"tierwise route: wall median {out['wall_s']['median'] * 1000:.0f} ms (min "
          f"{out['wall_s']['min'] * 1000:.0f}), CPU median {out['cpu_s']['median'] * 1000:.0f} "
          f"ms, exit {out['exit_codes']} (target <= 300 ms wall)")
    print(f"python -c pass: {out['python_floor_s'] * 1000:.0f} ms")
    print("steps inside the process (median ms):")
    for name, ms in out["steps_ms"].items():
        print(f"  {ms:7.1f}  {name}")
    print(f"  {sum(out['steps_ms'].values()):7.1f}  total")
    print(f"heavy modules loaded: {heavy or 'none'}")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: tierwise's modules are compiled from source on "
              "every run (~20-30 ms here); an installed package has its .pyc files")
    (HERE / "route_cli.json").write_text(json.dumps(out, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--src", choices=["head", "worktree"], default="head")
    ap.add_argument("--route", action="store_true",
                    help="only `tierwise route`: wall, CPU, steps, imports (route_cli.json)")
    args = ap.parse_args()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **bench.tierwise_source(args.src)}
    if args.route:
        return route_only(args, env)
    py = sys.executable
    upstream = bench.Server("upstream", [py, str(HERE / "upstream.py"), "--port",
                                         str(bench.UPSTREAM_PORT)],
                            f"http://127.0.0.1:{bench.UPSTREAM_PORT}/healthz",
                            f"http://127.0.0.1:{bench.UPSTREAM_PORT}/v1/chat/completions", "x")
    out: dict = {"repeats": args.repeats, "src": args.src, "load": os.getloadavg()[0],
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "commit": bench.sh(["git", "-C", str(bench.REPO), "rev-parse", "--short",
                                     "HEAD"])}
    try:
        upstream.start()
        for label, policy in (("bench policy", ["--policy", str(HERE / "bench-policy.toml")]),
                              ("embedded demo", [])):
            serve_runs = [time_serve(policy, env) for _ in range(args.repeats)]
            readyz = [r[3] for r in serve_runs if r[3] is not None]
            out[f"serve {label}"] = {
                "ready_s": statistics.median(r[0] for r in serve_runs),
                "first_answer_s": statistics.median(r[1] for r in serve_runs),
                "readyz_s": (statistics.median(readyz)
                             if len(readyz) == len(serve_runs) else None),
                "scorer": serve_runs[0][2]}
            print(f"serve ({label}): ready {out[f'serve {label}']['ready_s']:.2f} s, first "
                  f"answer {out[f'serve {label}']['first_answer_s']:.2f} s, /readyz "
                  f"{out[f'serve {label}']['readyz_s']} s "
                  f"[scorer {serve_runs[0][2]}]", flush=True)
    finally:
        upstream.stop()
    floor_runs = []
    for _ in range(args.repeats):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor_runs.append(time.monotonic() - t0)
    out["python -c pass"] = {"wall_s": statistics.median(floor_runs)}
    print(f"python -c pass: {out['python -c pass']['wall_s']:.3f} s (interpreter floor)")
    for label, real in (("tierwise route (CLI)", True), ("route via bench wrapper", False)):
        route_runs = [time_route(env, real) for _ in range(args.repeats)]
        out[label] = {"wall_s": statistics.median(r[0] for r in route_runs),
                      "exit_codes": sorted({r[1] for r in route_runs})}
        print(f"{label}: {out[label]['wall_s']:.2f} s (exit {out[label]['exit_codes']})",
              flush=True)
    out["imports"] = {
        "route path (router.cli + decide, no litellm)": importtime(
            "import router.cli, router.engine, policies", env),
        "serve path (router.serving.proxy, uvicorn)": importtime(
            "import router.serving.proxy, uvicorn", env),
        "litellm": importtime("import litellm", env),
        "router.upstream.passthrough": importtime("import router.upstream.passthrough", env),
    }
    for k, rows in out["imports"].items():
        print(f"imports, {k}: " + ", ".join(f"{n} {s:.2f}s" for s, n in rows[:5]))
    (HERE / "startup.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
