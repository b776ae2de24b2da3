"""Where a proxy's CPU goes under load: py-spy on the server while wrk drives it.

    /tmp/v1/bin/python bench/proxy/profile.py [--target tierwise] [--seconds 10]

Starts the bench upstream and the target (tierwise | tierwise+passthrough | litellm-proxy, as in
run.py), drives it with wrk at concurrency 32 (non-stream, then stream), samples it with
`py-spy record --format raw` (100 Hz, all threads, idle samples dropped) and writes a summary of
inclusive shares per function to bench/proxy/profile-<target>-<mode>.txt. bench/PROFILE.md
quotes these files. Needs py-spy (pip install py-spy) and ptrace permission over the server.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

IDLE_LEAVES = ("thread.py:81)", "selectors.py", "Condition.wait", "threading.py:3")


def summarize(folded: Path, top: int = 70) -> tuple[int, list[tuple[float, str]]]:
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        n = int(n_text)
        frames = stack.split(";")
        if any(i in frames[-1] for i in IDLE_LEAVES) or "Condition.wait" in stack:
            continue
        total += n
        seen = set()
        for f in frames:
            if " (" in f:
                name, path = f.split(" (", 1)
                key = f"{name} [{'/'.join(path.split(':')[0].split('/')[-2:])}]"
            else:
                key = f
            if key not in seen:
                incl[key] += n
                seen.add(key)
    skip = ("Thread._bootstrap", "asyncio/runners", "uvicorn/main", "uvicorn/server",
            "uvicorn/_compat", "base_events.py]", "asyncio/events.py]", "<module>",
            "click/core.py", "router/cli.py", "tierwise_serve.py", "passthrough_proxy.py] main")
    rows = [(100 * v / total, k) for k, v in incl.most_common(400)
            if not any(s in k for s in skip)]
    return total, rows[:top]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tierwise",
                    choices=["tierwise", "tierwise+passthrough", "litellm-proxy"])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--src", choices=["head", "worktree"], default="head")
    ap.add_argument("--litellm-venv", default="/tmp/litellm-proxy-venv")
    ap.add_argument("--log-level", default="warning",
                    help="tierwise serve --log-level (run.py uses warning; the CLI default, "
                         "info, writes an access log line per request)")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    py = sys.executable
    src_env = bench.tierwise_source(args.src)
    offline = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    upstream = bench.Server("upstream", [py, str(HERE / "upstream.py"), "--port",
                                         str(bench.UPSTREAM_PORT)],
                            f"http://127.0.0.1:{bench.UPSTREAM_PORT}/healthz",
                            f"http://127.0.0.1:{bench.UPSTREAM_PORT}/v1/chat/completions",
                            "bench-small")
    if args.target == "litellm-proxy":
        server = bench.Server(
            "litellm-proxy", [str(Path(args.litellm_venv) / "bin" / "litellm"), "--config",
                              str(HERE / "litellm-config.yaml"), "--host", "127.0.0.1",
                              "--port", str(bench.LITELLM_PORT), "--num_workers", "1",
                              "--log_config", str(HERE / "log-config.json")],
            f"http://127.0.0.1:{bench.LITELLM_PORT}/health/liveliness",
            f"http://127.0.0.1:{bench.LITELLM_PORT}/v1/chat/completions", "bench",
            env={**offline, "LITELLM_MASTER_KEY": bench.LITELLM_KEY}, auth=bench.LITELLM_KEY)
    else:
        script, port = (("tierwise_serve.py", bench.TIERWISE_PORT) if args.target == "tierwise"
                        else ("passthrough_proxy.py", bench.TW_PASS_PORT))
        log = ["--log-level", args.log_level] if args.target == "tierwise" else []
        server = bench.Server(args.target, [py, str(HERE / script), "--policy",
                                            str(HERE / "bench-policy.toml"), "--port", str(port),
                                            *log],
                              f"http://127.0.0.1:{port}/healthz",
                              f"http://127.0.0.1:{port}/v1/chat/completions", "auto",
                              env={**offline, **src_env})
    try:
        upstream.start()
        server.start()
        server.check()
        assert server.proc is not None
        for stream in (False, True):
            mode = "stream" if stream else "json"
            bench.wrk(server, 32, 2, stream)  # warm-up
            env = {**os.environ, "BENCH_MODEL": server.model,
                   "BENCH_STREAM": "1" if stream else "0", "BENCH_AUTH": server.auth}
            load = subprocess.Popen(
                ["wrk", "-t1", "-c32", f"-d{args.seconds + 4:g}s", "--timeout", "30s", "-s",
                 str(HERE / "chat.lua"), server.chat_url], env=env, stdout=subprocess.PIPE,
                text=True)
            time.sleep(2)
            folded = Path(f"/tmp/tierwise-profile-{args.target}-{mode}.folded")
            subprocess.run([pyspy, "record", "-p", str(server.proc.pid), "-d",
                            str(int(args.seconds)), "-r", "100", "-f", "raw", "-o",
                            str(folded)], check=True, capture_output=True, timeout=120)
            out = load.communicate(timeout=120)[0]
            total, rows = summarize(folded)
            rps = next((ln.split()[-1] for ln in out.splitlines()
                        if ln.startswith("Requests/sec")), "?")
            text = [f"# {args.target}, {mode}, concurrency 32, wrk {rps} req/s, log level "
                    f"{args.log_level if args.target == 'tierwise' else '-'}, "
                    f"load average {os.getloadavg()[0]:.2f}",
                    f"# py-spy 100 Hz, {total} non-idle samples; inclusive share per function",
                    *[f"{pct:5.1f}% {name}" for pct, name in rows]]
            dest = HERE / f"profile-{args.target}-{mode}.txt"
            dest.write_text("\n".join(text) + "\n")
            print(f"wrote {dest}")
    finally:
        server.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
