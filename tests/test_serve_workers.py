"""`tierwise serve --workers N` (router/serving/workers.py) as real processes on loopback: the
demo policy (embedded simulator) on two workers, concurrent requests, graceful SIGTERM; and the
configurations it refuses."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from guardkit import free_port, wait_ready
from serveproc import serve_argv

from policies import parse_policy
from router.accounting.ledger import Ledger
from router.serving.workers import check_workers

DEMO = Path(__file__).resolve().parents[1] / "policies" / "demo.toml"


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(serve_argv(*args), cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ppid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def test_two_workers_share_the_port_the_ledger_and_metrics_and_stop_on_sigterm(tmp_path):
    port, ledger, metrics_dir = free_port(), tmp_path / "ledger.db", tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = _serve(tmp_path, "--workers", "2", "--port", str(port), "--log-level", "warning",
                  "--ledger", str(ledger), env=env)
    url = f"http://127.0.0.1:{port}"
    answered: list[httpx.Response] = []
    try:
        wait_ready(proc, url, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]

        def ask(i: int) -> httpx.Response:
            # a new connection per request: the kernel hands each to whichever worker accepts
            return httpx.post(url + "/v1/chat/completions", timeout=30, json={
                "model": "auto", "messages": [{"role": "user", "content": f"question {i}"}]})

        pids: set[int] = set()
        for round_ in range(5):  # both workers accept almost always in the first round
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(ask, range(round_ * 40, round_ * 40 + 40)))
            assert [r.status_code for r in answers] == [200] * 40, answers[0].text
            answered += answers
            # prometheus-client's multiprocess mode: one file per process that counted a request
            pids = {int(m.group(1)) for f in metrics_dir.iterdir()
                    if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))}
            if len(pids) >= 2:
                break
        assert len(pids) == 2, pids
        assert all(_ppid(pid) == proc.pid for pid in pids)  # the server's own workers

        # any worker's /metrics is the sum over both
        scrape = httpx.get(url + "/metrics", timeout=10).text
        total = sum(float(line.rsplit(" ", 1)[1]) for line in scrape.splitlines()
                    if line.startswith("tierwise_requests_total{"))
        assert total == len(answered)

        # SIGTERM with streams in flight (the large simulated tier takes ~0.45 s, its headers
        # come after ~0.08 s): each worker finishes them, keeps their books, and the server
        # exits 0. SIGTERM waits for every stream's headers: a connection still in a worker's
        # accept backlog when the worker closes its socket is reset by the kernel (it was never
        # a request: nothing answered, nothing charged), and a fixed sleep raced that on a
        # loaded machine.
        headers = threading.Semaphore(0)

        def stream(i: int) -> httpx.Response:
            with httpx.stream("POST", url + "/v1/chat/completions", timeout=30, json={
                    "model": "large", "stream": True,
                    "messages": [{"role": "user", "content": f"streamed {i}"}]}) as r:
                headers.release()
                r.read()
            return r

        with ThreadPoolExecutor(16) as pool:
            streams = [pool.submit(stream, i) for i in range(16)]
            for _ in streams:
                assert headers.acquire(timeout=30), [s.exception() for s in streams if s.done()]
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            late = [s.result() for s in streams]
        assert [r.status_code for r in late] == [200] * 16
        assert all(r.text.rstrip().endswith("data: [DONE]") for r in late)
        answered += late
        assert proc.wait(30) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() - started < 20
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    ids = sorted(r.headers["x-tierwise-request-id"] for r in answered)
    assert sorted(r.request_id for r in Ledger(ledger).query()) == ids


def _children(pid: int) -> set[int]:
    return {int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()}


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it counts: it no longer runs or holds ports)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_workers_stop_when_the_parent_is_killed(tmp_path):
    """SIGKILL the parent (it cannot forward that): the kernel stops every worker (Linux
    PR_SET_PDEATHSIG), so nothing is left serving the port or blocking a restart."""
    port = free_port()
    proc = _serve(tmp_path, "--workers", "2", "--port", str(port), "--log-level", "warning",
                  "--ledger", "")
    url = f"http://127.0.0.1:{port}"
    children: set[int] = set()
    try:
        wait_ready(proc, url, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]
        # the two workers and multiprocessing's resource tracker
        children = _children(proc.pid)
        assert len(children) >= 2, children
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 15
        while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if not _gone(pid)] == []
        with socket.socket() as again:  # the port is free: a new server could bind it
            again.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in children:  # a failed test leaves no orphans behind
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def _tcp(port: int, state: str) -> set[int]:
    """The inodes of this host's IPv4 TCP sockets on local `port` in `state` (/proc/net/tcp:
    "0A" listening, "01" established)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            found.add(int(fields[9]))
    return found


def _sockets_of(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def test_each_worker_listens_on_its_own_socket_and_gets_its_share_of_connections(tmp_path):
    """SO_REUSEPORT, one listening socket per worker: 32 keep-alive connections opened at once
    (as wrk does) are spread by the kernel's hash, not taken by whichever worker wakes first
    (one shared socket split them as unevenly as 30/2, bench/WORKERS.md)."""
    port = free_port()
    proc = _serve(tmp_path, "--workers", "2", "--port", str(port), "--log-level", "warning",
                  "--ledger", "")
    url = f"http://127.0.0.1:{port}"
    clients: list[socket.socket] = []
    try:
        wait_ready(proc, url, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]
        listening = _tcp(port, "0A")
        workers = [pid for pid in _children(proc.pid) if _sockets_of(pid) & listening]
        assert len(workers) == 2 and len(listening) == 2, (workers, listening)
        assert not _sockets_of(proc.pid) & listening  # the parent let go of them
        for _ in range(32):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        deadline = time.monotonic() + 10
        while True:  # until both workers have accepted all 32
            established = _tcp(port, "01")
            held = [len(_sockets_of(pid) & established) for pid in workers]
            if sum(held) == 32 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # a hash of 32 client ports: fewer than 4 on one side has probability ~3e-6
        assert sum(held) == 32 and min(held) >= 4, held
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_port_served_by_workers_is_in_use_for_another_serve(tmp_path):
    """Sockets with SO_REUSEPORT would let a second `serve --workers` join the port silently;
    the address is bound once without it first, so the second one stops with the usual line."""
    port = free_port()
    first = _serve(tmp_path, "--workers", "2", "--port", str(port), "--log-level", "warning",
                   "--ledger", "")
    try:
        wait_ready(first, f"http://127.0.0.1:{port}", 90,
                   lambda: first.stderr.read().decode())  # type: ignore[union-attr]
        for workers in ("2", "1"):
            run = subprocess.run(serve_argv("--workers", workers, "--port", str(port),
                                            "--ledger", ""),
                                 cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert run.returncode == 2, run.stderr
            assert run.stderr.strip().splitlines() == [
                f"tierwise serve: port {port} on 127.0.0.1 is already in use (another tierwise "
                f"serve?). Fix: stop that process, or pass another port, e.g. --port {port + 1}"]
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0


def test_budgets_without_redis_are_refused_with_workers(tmp_path):
    policy = tmp_path / "limited.toml"
    policy.write_text(DEMO.read_text()
                      + "\n[limits]\nusd_per_day = 5.0\nrequests_per_minute = 60\n")
    run = subprocess.run(serve_argv("--policy", str(policy), "--workers", "2",
                                    "--port", str(free_port())),
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "[limits] requests_per_minute" in lines[0] and "[limits] usd_per_day" in lines[0]
    assert "redis://" in lines[0] and "--workers 1" in lines[0]


def test_workers_must_be_one_or_more(tmp_path):
    run = subprocess.run(serve_argv("--workers", "0"),
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "--workers: must be a whole number, 1 or more (got '0')" in run.stderr


def test_what_the_workers_share_is_said():
    text = DEMO.read_text()
    memory = check_workers(parse_policy(text), 2)
    assert "per worker: coalescing" in memory
    limited = 'state = "redis://127.0.0.1:6379/0"\n' + text + "\n[limits]\nusd_per_day = 5.0\n"
    assert "through Redis" in check_workers(parse_policy(limited), 2)  # Redis: budgets allowed


def test_with_redis_a_rate_limit_holds_across_the_workers(tmp_path):
    from conftest import require_binary
    from redisproc import RedisServer

    redis = RedisServer(require_binary("redis-server"), tmp_path).start()
    policy = tmp_path / "shared.toml"
    policy.write_text(f'state = "{redis.url}"\n' + DEMO.read_text()
                      + "\n[limits]\nrequests_per_minute = 10\n")
    port = free_port()
    proc = _serve(tmp_path, "--policy", str(policy), "--workers", "2", "--port", str(port),
                  "--log-level", "warning", "--ledger", "")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, 90, lambda: proc.stderr.read().decode())  # type: ignore[union-attr]
        while time.time() % 60 > 50:  # one fixed one-minute window for the whole burst
            time.sleep(0.5)

        def ask(i: int) -> int:
            return httpx.post(url + "/v1/chat/completions", timeout=30, json={
                "model": "auto", "messages": [{"role": "user", "content": f"q {i}"}]}
                ).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = sorted(pool.map(ask, range(30)))
        # one limit for the whole server, not 10 per worker
        assert codes == [200] * 10 + [429] * 20, codes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        redis.stop()


def test_every_test_server_process_goes_through_serveproc():
    """The rerun with TIERWISE_TEST_WORKERS=2 (.ci/run) covers every test that starts
    `tierwise serve` only if they all build the command with serveproc.serve_argv() and are
    marked serve_process: a new test that starts it otherwise fails here."""
    here = Path(__file__).resolve().parent
    direct = re.compile(r'"router",\s*"serve"|TIERWISE,\s*"serve"|"tierwise",\s*"serve"')
    starts_otherwise = [f.name for f in sorted(here.glob("*.py"))
                        if f.name != "serveproc.py" and direct.search(f.read_text())]
    assert starts_otherwise == []
    unmarked = [f.name for f in sorted(here.glob("test_*.py"))
                if "serve_argv(" in (text := f.read_text()) and "serve_process" not in text
                and f.name != Path(__file__).name]  # this file's servers choose --workers
    assert unmarked == []
