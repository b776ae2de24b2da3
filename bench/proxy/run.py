"""Proxy overhead, side by side, in one run: the upstream directly, tierwise, LiteLLM's proxy.

    /tmp/v1/bin/python bench/proxy/run.py            # ~6 minutes, writes bench/RESULTS.md
    /tmp/v1/bin/python bench/proxy/run.py --quick    # ~2 minutes, short cells

Starts bench/proxy/upstream.py (instant answers, aiohttp, own process), then for each target
(upstream direct, `tierwise serve` on bench/proxy/bench-policy.toml, LiteLLM's proxy from its own
venv on bench/proxy/litellm-config.yaml; each one worker process) runs wrk (one thread, its own
process, bench/proxy/chat.lua: a different prompt per request) at concurrency 1, 32 and 128,
non-stream and stream. Per cell: requests/s, p50/p99 latency, added p50/p99 over the upstream
at the same concurrency, and the server's CPU per request (from /proc). RSS of each server when
ready (idle), and after its run. Raw numbers go to bench/proxy/results.json.

Needs: wrk (apt), the tierwise venv running this script (aiohttp, starlette, uvicorn, litellm),
LiteLLM's proxy in its own venv (--litellm-venv, default /tmp/litellm-proxy-venv:
`pip install 'litellm[proxy]==1.108.7'`). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
UPSTREAM_PORT, TIERWISE_PORT, LITELLM_PORT, TW_PASS_PORT = 18701, 18702, 18703, 18704
POLICY = HERE / "bench-policy.toml"


def shift_ports(offset: int) -> None:
    """--port-offset: every port moved by `offset`, and the bench policy rewritten to the moved
    upstream, so two checkouts can benchmark on one machine without taking each other's ports."""
    global UPSTREAM_PORT, TIERWISE_PORT, LITELLM_PORT, TW_PASS_PORT, POLICY
    if not offset:
        return
    UPSTREAM_PORT, TIERWISE_PORT, LITELLM_PORT, TW_PASS_PORT = (
        p + offset for p in (18701, 18702, 18703, 18704))
    POLICY = Path(f"/tmp/tierwise-bench-policy-{offset}.toml")
    POLICY.write_text((HERE / "bench-policy.toml").read_text().replace(
        "127.0.0.1:18701", f"127.0.0.1:{UPSTREAM_PORT}"))
LITELLM_KEY = "sk-bench-master-key"


def accurate_policy() -> Path:
    """The bench policy (as --port-offset left it) with `scorer = "accurate"`, in /tmp."""
    path = Path(f"/tmp/tierwise-bench-policy-accurate-{os.getpid()}.toml")
    text = POLICY.read_text()
    path.write_text(text.replace("[[tiers]]", 'scorer = "accurate"\n\n[[tiers]]', 1))
    return path
NICE = 0  # --nice: niceness of every process this script starts (servers, wrk)


def _niced() -> None:
    if NICE:
        os.nice(NICE)
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# processes


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except OSError:
            pass
    return total / 2**20


def cpu_s(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except OSError:
            pass
    return total / CLK


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None,
         timeout: float = 10.0) -> tuple[int, bytes, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@dataclass
class Server:
    name: str
    argv: list[str]
    ready_url: str
    chat_url: str
    model: str
    env: dict = field(default_factory=dict)
    auth: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None
    ready_s: float = 0.0
    first_answer_s: float = 0.0

    def start(self, timeout: float = 90.0) -> None:
        port = int(self.ready_url.split(":")[2].split("/")[0])
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(f"port {port} is already in use: stop what listens there "
                                   f"(ss -ltnp | grep {port}) before benchmarking {self.name}")
        self.log = Path(f"/tmp/tierwise-bench-{self.name}.log")
        env = {**os.environ, **self.env}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_niced if NICE else None)
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log}")
            try:
                if http("GET", self.ready_url, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log}")
            time.sleep(0.02)
        self.ready_s = time.monotonic() - t0
        self.first_answer_s = time.monotonic() - t0  # refined by check()

    def wait_warm(self, timeout: float = 180.0) -> float | None:
        """Wait for /readyz 200 when the server has one (tierwise warms up in a thread: the
        scorer, litellm); measuring before that would time the warm-up, not the proxy."""
        base = self.ready_url.rsplit("/", 1)[0]
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                code = http("GET", base + "/readyz", timeout=5)[0]
            except OSError:
                code = 0
            if code == 200:
                return time.monotonic() - t0
            if code == 404:
                return None
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: /readyz not 200 after {timeout}s")

    def check(self) -> None:
        """One non-stream and one stream request must come back whole (status, content, DONE)."""
        headers = {"Authorization": f"Bearer {self.auth}"} if self.auth else {}
        body = {"model": self.model, "max_tokens": 64,
                "messages": [{"role": "user", "content": "sanity check"}]}
        t0 = time.monotonic()
        status, raw, _ = http("POST", self.chat_url, body, headers, timeout=60)
        if self.first_answer_s:
            self.first_answer_s += time.monotonic() - t0
        if status != 200 or "simulated answer" not in raw.decode():
            raise RuntimeError(f"{self.name}: bad answer {status}: {raw[:300]!r}")
        status, raw, _ = http("POST", self.chat_url, {**body, "stream": True}, headers,
                              timeout=60)
        text = raw.decode()
        if status != 200 or "data: [DONE]" not in text or "simulated" not in text or (
                '"error"' in text):
            raise RuntimeError(f"{self.name}: bad stream {status}: {raw[:300]!r}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)


def tierwise_source(src: str) -> dict:
    """Environment that makes the tierwise servers import `src` code: HEAD is exported to /tmp
    (the working tree is shared with engineers mid-edit) and put first on PYTHONPATH; the
    working tree is this script's checkout, put first too (else a venv's editable install of
    another checkout, e.g. the main one when this runs from a `git worktree`, would be served)."""
    if src == "worktree":
        return {"PYTHONPATH": str(REPO)}
    dest = Path("/tmp/tierwise-bench-src")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    paths = [p for p in ("router", "policies", "classifiers")
             if sh(["git", "-C", str(REPO), "ls-tree", "HEAD", p])]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", *paths],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return {"PYTHONPATH": str(dest)}


# ---------------------------------------------------------------------------------------------
# load


def settle(pid: int, limit: float = 30.0) -> float:
    """Wait until the server has worked off the requests wrk abandoned at the end of the last
    cell (its CPU use drops below 5% over 0.25 s); seconds waited."""
    t0 = time.monotonic()
    c = cpu_s(pid)
    while time.monotonic() - t0 < limit:
        time.sleep(0.25)
        c2 = cpu_s(pid)
        if c2 - c < 0.0125:
            break
        c = c2
    return time.monotonic() - t0


UPSTREAM_PID = 0  # set once the upstream runs: its CPU per request is reported with each cell


def idle_ticks() -> tuple[int, int]:
    """(idle, total) clock ticks of the whole machine so far (/proc/stat): whether the cores
    were saturated during a cell, by anything."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:8]]
    return fields[3] + fields[4], sum(fields)


def wrk(server: Server, conc: int, seconds: float, stream: bool) -> dict:
    env = {**os.environ, "BENCH_MODEL": server.model, "BENCH_STREAM": "1" if stream else "0",
           "BENCH_AUTH": server.auth}
    argv = ["wrk", "-t1", f"-c{conc}", f"-d{seconds:g}s", "--timeout", "30s",
            "-s", str(HERE / "chat.lua"), server.chat_url]
    pid = server.proc.pid if server.proc else 0
    settle(pid)
    c0, u0, m0 = cpu_s(pid), cpu_s(UPSTREAM_PID), idle_ticks()
    out = subprocess.run(argv, env=env, capture_output=True, text=True,
                         timeout=seconds + 60, preexec_fn=_niced if NICE else None).stdout
    c1, u1, m1 = cpu_s(pid), cpu_s(UPSTREAM_PID), idle_ticks()
    m = re.search(r"^JSON (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk gave no summary for {server.name}: {out[-500:]}")
    r = json.loads(m.group(1))
    errors = sum(v for k, v in r.items() if k.startswith("err_"))
    n = r["requests"]
    return {"target": server.name, "stream": stream, "concurrency": conc,
            "requests": n, "errors": errors, "rps": n / (r["duration_us"] / 1e6),
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
            "server_cpu_ms_per_req": (c1 - c0) * 1000 / n if n else None,
            "upstream_cpu_ms_per_req": ((u1 - u0) * 1000 / n if n and pid != UPSTREAM_PID
                                        else None),
            "machine_idle_pct": 100 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
            "raw": r}


# ---------------------------------------------------------------------------------------------
# report


def sh(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def versions(litellm_python: str) -> dict:
    probe = ("import importlib.metadata as m,json;print(json.dumps({p:m.version(p) for p in "
             "%r if __import__('importlib.util').util.find_spec(p.replace('-','_'))}))")
    tw = sh([sys.executable, "-c", probe % ["litellm", "starlette", "uvicorn", "aiohttp",
                                             "uvloop", "httptools", "orjson"]])
    lp = sh([litellm_python, "-c", probe % ["litellm", "fastapi", "starlette", "uvicorn",
                                             "uvloop", "httptools", "orjson"]]) \
        if Path(litellm_python).exists() else "{}"
    return {"tierwise_venv": json.loads(tw or "{}"), "litellm_proxy_venv": json.loads(lp or "{}"),
            "wrk": sh(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else "?",
            "tierwise_commit": sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])}


def table(rows: list[dict], base: dict) -> list[str]:
    out = ["| target | mode | conc | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
           "| server CPU ms/req | CPU ceiling req/s | upstream CPU ms/req | machine idle % "
           "| errors |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = base.get((r["stream"], r["concurrency"]))
        add50 = f"{r['p50_ms'] - b['p50_ms']:.2f}" if b and r["target"] != "upstream" else "-"
        add99 = f"{r['p99_ms'] - b['p99_ms']:.2f}" if b and r["target"] != "upstream" else "-"
        cpu = r["server_cpu_ms_per_req"] or 0.0
        up = r.get("upstream_cpu_ms_per_req")
        up = "-" if up is None else f"{up:.3f}"
        idle = r.get("machine_idle_pct")  # older results.json have neither
        idle = "-" if idle is None else f"{idle:.0f}"
        out.append(f"| {r['target']} | {'stream' if r['stream'] else 'json'} | "
                   f"{r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                   f"{r['p99_ms']:.2f} | {add50} | {add99} | "
                   f"{cpu:.2f} | {1000 / cpu if cpu else 0:.0f} | {up} | {idle} | "
                   f"{r['errors']} |")
    return out


def write_results(path: Path, res: dict) -> None:
    rows = res["cells"]
    base = {(r["stream"], r["concurrency"]): r for r in rows if r["target"] == "upstream"}
    m, v = res["machine"], res["versions"]
    lines = [
        "# Proxy overhead: tierwise vs LiteLLM's proxy, same machine, same run",
        "",
        f"Generated by `{res['command']}` on {res['date']} (UTC), "
        f"{res['cell_seconds']} s per cell, in {res['wall_s']:.0f} s.",
        "",
        f"- Machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gb']} GB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- tierwise {'commit' if res['src'] == 'head' else 'working tree at'} "
        f"{v['tierwise_commit']}, venv: "
        + ", ".join(f"{k} {x}" for k, x in v["tierwise_venv"].items()),
        "- LiteLLM proxy venv: " + (", ".join(f"{k} {x}" for k, x in
                                             v["litellm_proxy_venv"].items()) or "not run"),
        f"- Load generator: {v['wrk']}, one thread, its own process, a different prompt per "
        "request (bench/proxy/chat.lua); upstream: bench/proxy/upstream.py (--engine "
        f"{res.get('upstream_engine', 'aiohttp')}, instant answers; stream = 8 SSE events)",
        f"- tierwise scorer: {res['scorer']}",
        "",
        "Every server is one worker process on 127.0.0.1; wrk, the upstream and the server under "
        "test share the 2 cores. *added* = the target's latency minus the upstream's own at the "
        "same concurrency and mode. *server CPU ms/req* = CPU time of the server process(es) "
        "during the cell / requests served: the cost that caps one worker's throughput. "
        "*CPU ceiling* = 1000 / that: the req/s one worker could serve with a core to itself "
        "(robust to other load on the machine, unlike req/s and latency).",
        "",
        f"Load average (1 min) at start / end of the run: {res['load'][0]} / {res['load'][1]} "
        "(the machine is shared: anything above ~0.5 before the run means other work competed "
        "for the 2 cores, and req/s and latency are noisier than CPU ms/req).",
        "",
        *table(rows, base),
        "",
    ]
    lines += ["## Memory and start-up", "",
              "| server | ready s | first answer s | RSS ready MB | RSS after run MB | "
              "requests served |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in res["servers"].items():
        lines.append(f"| {name} | {s['ready_s']:.2f} | {s['first_answer_s']:.2f} | "
                     f"{s['rss_ready_mb']:.0f} | {s['rss_after_mb']:.0f} | {s['requests']} |")
    lines += ["", "*ready* = process start until its health URL answers 200; *first answer* = "
              "until the first routed chat answer (sent as soon as ready); *RSS ready* is taken "
              "before that first answer. tierwise warms up (scorer, litellm import) in a thread "
              "after start; the cells are measured after its /readyz turns 200.", ""]
    lines += extra_sections()
    lines += ["## Against the issue's targets", ""]
    for line in res["verdicts"]:
        lines.append(f"- {line}")
    lines.append("")
    if res.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in res["notes"]], ""]
    path.write_text("\n".join(lines))


def extra_sections() -> list[str]:
    """Start-up, soak and coalescing results from their own scripts' JSON, when present."""
    out: list[str] = []
    path = HERE / "startup.json"
    if path.exists():
        st = json.loads(path.read_text())
        out += [f"## Start-up (`python bench/proxy/startup.py`, {st.get('date', '?')}, median of "
                f"{st['repeats']}, load average {st['load']:.1f})", "",
                "| what | seconds | note |", "|---|---:|---|"]
        for key, v in st.items():
            if key.startswith("serve "):
                out.append(f"| `tierwise serve` ({key[6:]}): /healthz answers | "
                           f"{v['ready_s']:.2f} | scorer: {v['scorer'][:60]} |")
                out.append(f"| `tierwise serve` ({key[6:]}): first routed answer, sent as "
                           f"soon as /healthz answers | {v['first_answer_s']:.2f} | |")
                if v.get("readyz_s") is not None:
                    out.append(f"| `tierwise serve` ({key[6:]}): /readyz 200 (warm-up done) | "
                               f"{v['readyz_s']:.2f} | warm-up imports litellm in a thread |")
        for key in ("python -c pass", "tierwise route (CLI)", "route via bench wrapper"):
            if key in st:
                codes = st[key].get("exit_codes")
                out.append(f"| `{key}` | {st[key]['wall_s']:.2f} | "
                           f"{'exit ' + str(codes) if codes else 'interpreter floor'} |")
        out += ["", "Largest imports (cumulative seconds, `python -X importtime`):", ""]
        for key, rows in st.get("imports", {}).items():
            out.append(f"- {key}: " + ", ".join(f"`{n}` {t:.2f}" for t, n in rows[:4]))
        out.append("")
    path = HERE / "soak.json"
    if path.exists():
        out += ["## Memory over a long run (`python bench/proxy/soak.py`)", "",
                "| target | date | commit | requests | idle RSS MB | RSS first -> last MB | "
                "growth MB / 10k req (2nd half) |", "|---|---|---|---:|---:|---|---:|"]
        for r in json.loads(path.read_text()):
            g = r["rss_growth_mb_per_10k_second_half"]
            out.append(f"| {r['target']} | {r['date']} | {r.get('commit', '?')} | "
                       f"{r['requests']} | "
                       f"{r['idle_rss_mb']:.0f} | {r['series'][0][1]:.0f} -> "
                       f"{r['series'][-1][1]:.0f} | {'n/a' if g is None else f'{g:.2f}'} |")
        out.append("")
    path = REPO / "bench" / "coalescing.md"
    if path.exists():
        out += ["## Coalescing (`python bench/coalescing.py [--stream]`)", ""]
        for name in ("coalescing.json", "coalescing-stream.json"):
            cpath = REPO / "bench" / name
            if not cpath.exists():
                continue
            c = json.loads(cpath.read_text())
            out.append(f"- {'stream' if c['stream'] else 'non-stream'}, {c['requests']} "
                       f"requests over {c['prompts']} prompts at once, upstream "
                       f"{c['delay_ms']:.0f} ms ({c['date']}, commit {c['commit']}): " + "; ".join(
                           f"{r['config']}: {r['upstream_calls']} upstream calls, p50 "
                           f"{r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms"
                           for r in c["rows"]))
        out += ["", "Details: bench/coalescing.md, bench/coalescing-stream.md.", ""]
    out += ["Where the CPU goes and how the pass-through is wired: bench/PROFILE.md.", ""]
    return out


def verdicts(rows: list[dict]) -> list[str]:
    def cell(target: str, stream: bool, conc: int) -> dict | None:
        return next((r for r in rows if r["target"] == target and r["stream"] == stream
                     and r["concurrency"] == conc), None)

    out = []
    for stream in (False, True):  # issue 17: two workers against one, same run
        one, two = cell("tierwise", stream, 32), cell("tierwise-2workers", stream, 32)
        if one and two:
            ratio = two["rps"] / one["rps"]
            out.append(f"tierwise-2workers {'stream' if stream else 'json'}: requests/s at "
                       f"concurrency 32 = {ratio:.2f}x one worker (target >= 1.4x: "
                       f"{'MET' if ratio >= 1.4 else 'NOT MET'}); server CPU per request "
                       f"{two['server_cpu_ms_per_req']:.3f} ms (2 workers) vs "
                       f"{one['server_cpu_ms_per_req']:.3f} ms (1)")
    for target in ("tierwise", "tierwise+uvloop", "tierwise+passthrough"):
        for stream in (False, True):
            mode = "stream" if stream else "json"
            t1, u1 = cell(target, stream, 1), cell("upstream", stream, 1)
            t32, l32 = cell(target, stream, 32), cell("litellm-proxy", stream, 32)
            if t1 and u1:
                add = t1["p50_ms"] - u1["p50_ms"]
                out.append(f"{target} {mode}: added p50 at concurrency 1 = {add:.2f} ms "
                           f"(target <= 1 ms: {'MET' if add <= 1 else 'NOT MET'})")
            if t32 and l32:
                ratio = t32["rps"] / l32["rps"]
                out.append(f"{target} {mode}: throughput at concurrency 32 = {ratio:.1f}x "
                           f"LiteLLM proxy (target >= 5x: {'MET' if ratio >= 5 else 'NOT MET'})")
                tc, lc = t32["server_cpu_ms_per_req"], l32["server_cpu_ms_per_req"]
                if tc and lc:
                    out.append(f"{target} {mode}: CPU per request at concurrency 32 = {tc:.2f} "
                               f"ms vs LiteLLM proxy {lc:.2f} ms: {lc / tc:.1f}x less (the "
                               "load-independent form of the throughput ratio)")
    return out


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 s cells (~2 minutes in all)")
    ap.add_argument("--seconds", type=float, help="seconds per cell (default 10, quick 2)")
    ap.add_argument("--concurrency", default="1,32,128")
    ap.add_argument("--targets",
                    default="upstream,tierwise,tierwise+uvloop,tierwise+passthrough,litellm-proxy")
    ap.add_argument("--upstream-engine", choices=["aiohttp", "raw"], default="aiohttp",
                    help="bench/proxy/upstream.py --engine: raw costs the shared cores ~4x "
                         "less CPU per answer (recorded in the output)")
    ap.add_argument("--litellm-venv", default=os.environ.get("LITELLM_PROXY_VENV",
                                                             "/tmp/litellm-proxy-venv"))
    ap.add_argument("--out", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness for every process started (e.g. -10 as root on a shared, "
                         "busy machine: measures what the software adds rather than the "
                         "scheduler's queue; recorded in the output)")
    ap.add_argument("--uvloop-path", default="/tmp/tw-fast",
                    help="for target tierwise+uvloop: a directory with uvloop and httptools "
                         "(pip install --target DIR uvloop httptools); uvicorn picks them up")
    ap.add_argument("--src", choices=["head", "worktree"], default="head",
                    help="tierwise code to serve: the committed HEAD (exported with git archive; "
                         "default) or the working tree as it is")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite --out from bench/proxy/results.json and the current "
                         "startup/soak JSON (no measurement)")
    ap.add_argument("--port-offset", type=int, default=0,
                    help="move every port (18701-18704) by this much (another checkout "
                         "benchmarking at the same time; LiteLLM's proxy config still names 18701: "
                         "leave litellm-proxy out of such runs)")
    args = ap.parse_args()
    shift_ports(args.port_offset)
    if args.render:
        res = json.loads((HERE / "results.json").read_text())
        res["verdicts"] = verdicts(res["cells"])
        write_results(Path(args.out), res)
        print(f"rendered {args.out} from bench/proxy/results.json")
        return 0
    seconds = args.seconds or (2 if args.quick else 10)
    global NICE
    NICE = args.nice
    concs = [int(c) for c in args.concurrency.split(",")]
    if not shutil.which("wrk"):
        sys.exit("run.py: wrk not found; apt-get install -y wrk")
    lpy = str(Path(args.litellm_venv) / "bin" / "python")
    targets = args.targets.split(",")
    notes: list[str] = []
    if "tierwise+uvloop" in targets and not (Path(args.uvloop_path) / "uvloop").exists():
        notes.append(f"tierwise+uvloop skipped: no uvloop under {args.uvloop_path}")
        targets.remove("tierwise+uvloop")
    if "litellm-proxy" in targets and not Path(lpy).exists():
        notes.append(f"LiteLLM proxy skipped: no venv at {args.litellm_venv} "
                     "(python -m venv it; pip install 'litellm[proxy]==1.108.7')")
        targets.remove("litellm-proxy")
    t_start = time.monotonic()
    load0 = os.getloadavg()[0]
    py = sys.executable
    src_env = tierwise_source(args.src)
    upstream = Server("upstream", [py, str(HERE / "upstream.py"), "--port", str(UPSTREAM_PORT),
                                   "--engine", args.upstream_engine],
                      f"http://127.0.0.1:{UPSTREAM_PORT}/healthz",
                      f"http://127.0.0.1:{UPSTREAM_PORT}/v1/chat/completions", "bench-small")
    offline = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    def tierwise(name: str, env: dict[str, str], extra: tuple[str, ...] = (),
                 policy: Path | None = None) -> Server:
        return Server(
            name, [py, str(HERE / "tierwise_serve.py"), "--policy",
                   str(policy or POLICY), "--host", "127.0.0.1", "--port",
                   str(TIERWISE_PORT), "--log-level", "warning", *extra],
            f"http://127.0.0.1:{TIERWISE_PORT}/healthz",
            f"http://127.0.0.1:{TIERWISE_PORT}/v1/chat/completions", "auto", env=env)

    servers = {
        "upstream": upstream,
        "tierwise": tierwise("tierwise", {**offline, **src_env}),
        # the same server as N processes on the port (`tierwise serve --workers 2`)
        "tierwise-2workers": tierwise("tierwise-2workers", {**offline, **src_env},
                                      ("--workers", "2")),
        # the bench policy with `scorer = "accurate"` (the MiniLM sentence head, ~4 ms/request)
        "tierwise-accurate": tierwise("tierwise-accurate", {**offline, **src_env},
                                      policy=accurate_policy()),
        "tierwise+uvloop": tierwise("tierwise+uvloop", {**offline, **src_env, "PYTHONPATH":
                                    os.pathsep.join(p for p in (src_env.get("PYTHONPATH"),
                                                                args.uvloop_path) if p)}),
        "tierwise+passthrough": Server(
            "tierwise+passthrough", [py, str(HERE / "passthrough_proxy.py"), "--policy",
                                     str(POLICY), "--port", str(TW_PASS_PORT)],
            f"http://127.0.0.1:{TW_PASS_PORT}/healthz",
            f"http://127.0.0.1:{TW_PASS_PORT}/v1/chat/completions", "auto",
            env={**offline, **src_env}),
        "litellm-proxy": Server(
            "litellm-proxy", [str(Path(args.litellm_venv) / "bin" / "litellm"), "--config",
                              str(HERE / "litellm-config.yaml"), "--host", "127.0.0.1",
                              "--port", str(LITELLM_PORT), "--num_workers", "1",
                              "--log_config", str(HERE / "log-config.json")],
            f"http://127.0.0.1:{LITELLM_PORT}/health/liveliness",
            f"http://127.0.0.1:{LITELLM_PORT}/v1/chat/completions", "bench",
            env={**offline, "LITELLM_MASTER_KEY": LITELLM_KEY}, auth=LITELLM_KEY),
    }
    cells: list[dict] = []
    info: dict[str, dict] = {}
    scorer = "?"
    try:
        upstream.start()
        upstream.check()
        global UPSTREAM_PID
        UPSTREAM_PID = upstream.proc.pid if upstream.proc else 0
        for name in targets:
            s = servers[name]
            if name != "upstream":
                s.start()
            assert s.proc is not None
            rss_ready = rss_mb(s.proc.pid)
            s.check()
            warm = s.wait_warm() if name.startswith("tierwise") else None
            if name.startswith("tierwise"):
                log = s.log.read_text() if s.log else ""
                m = re.search(r"stand-in scorer \((.*)\)", log)
                scorer = (f"STAND-IN (text length, ~2 us), because {m.group(1)}" if m
                          else "classifiers.default_scorer (the shipped model)")
            print(f"[{name}] ready {s.ready_s:.2f}s, first answer {s.first_answer_s:.2f}s, "
                  f"RSS {rss_ready:.0f} MB, warm {warm}", flush=True)
            wrk(s, 32, 2 if not args.quick else 1, False)  # warm-up
            wrk(s, 32, 2 if not args.quick else 1, True)
            served = 0
            for stream in (False, True):
                for conc in concs:
                    r = wrk(s, conc, seconds, stream)
                    served += r["requests"]
                    cells.append(r)
                    print(f"[{name}] {'stream' if stream else 'json  '} c={conc:<3} "
                          f"{r['rps']:7.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 "
                          f"{r['p99_ms']:7.2f} ms  cpu {r['server_cpu_ms_per_req'] or 0:.2f} ms/req"
                          f"  errors {r['errors']}", flush=True)
            info[name] = {"ready_s": s.ready_s if name != "upstream" else upstream.ready_s,
                          "first_answer_s": s.first_answer_s, "rss_ready_mb": rss_ready,
                          "warm_after_first_s": warm,
                          "rss_after_mb": rss_mb(s.proc.pid), "requests": served}
            if name != "upstream":
                s.stop()
    finally:
        for s in servers.values():
            s.stop()
    if max(load0, os.getloadavg()[0]) > 1.5:
        notes.append(f"The machine was busy with other work during this run (load average "
                     f"{load0:.1f} at start on {os.cpu_count()} cores): every server got a "
                     "fraction of a core, so absolute req/s, latency and even CPU ms/req are "
                     "inflated; compare rows with each other (same run, same conditions), and "
                     "rerun on an idle machine for absolute numbers.")
    if any(r["errors"] for r in cells):
        notes.append("some cells had errors (column errors): see bench/proxy/results.json")
    if "tierwise+uvloop" in targets:
        notes.append("tierwise+uvloop = `tierwise serve` exactly as the tierwise row, with "
                     "uvloop and httptools importable (uvicorn's 'auto' loop and HTTP parser "
                     "then use them; LiteLLM's proxy venv has both); i.e. what depending on "
                     "uvicorn[standard] would give.")
    if "tierwise+passthrough" in targets:
        notes.append("tierwise+passthrough = bench/proxy/passthrough_proxy.py: a minimal proxy "
                     "on the same Router.decide() and policy that calls the upstream through "
                     "router/upstream/passthrough.py and does nothing else (no coalescing, checks, "
                     "metrics, ledger, accounting). It is the floor for this stack (uvicorn + "
                     "Starlette + aiohttp client); the gap between it and `tierwise` is what "
                     "tierwise's own per-request features cost. `tierwise` itself uses the "
                     "pass-through for OpenAI-protocol tiers since commit 97ad188.")
    if NICE:
        notes.append(f"Every process of this run (servers, upstream, wrk) ran at niceness {NICE}"
                     " (--nice), ahead of the other work on the machine.")
    res = {"command": " ".join(["python bench/proxy/run.py", *sys.argv[1:]]),
           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
           "cell_seconds": seconds, "wall_s": time.monotonic() - t_start,
           "load": [round(load0, 2), round(os.getloadavg()[0], 2)], "src": args.src,
           "upstream_engine": args.upstream_engine,
           "machine": machine(), "versions": versions(lpy), "scorer": scorer,
           "cells": cells, "servers": info, "verdicts": verdicts(cells), "notes": notes}
    out = Path(args.out)
    raw = (HERE / "results.json" if out.resolve() == (REPO / "bench" / "RESULTS.md").resolve()
           else out.with_suffix(".json"))
    raw.write_text(json.dumps(res, indent=1))
    write_results(Path(args.out), res)
    print(f"wrote {args.out} in {res['wall_s']:.0f} s")
    for line in res["verdicts"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
