"""`tierwise serve --workers N`: N processes serving one port, each a full server.

The parent binds the listening sockets (so a port in use is one clear error, before any worker
starts; on Linux one socket per worker with SO_REUSEPORT, and the kernel spreads the connections
evenly over them: router.serving.startup.worker_sockets) and starts N worker processes
(multiprocessing "spawn": a fresh interpreter each, no state forked from the parent), each
accepting on its socket. Each worker loads the policy, opens the ledger and builds the whole
app itself, as a single `tierwise serve` does, and keeps its own books: on shutdown its
lifespan flushes its accountant into the ledger (router.serving.guard).

What is shared between the workers:
- the ledger: one SQLite file, which several processes may append to (WAL, busy_timeout; see
  router/accounting/ledger.py);
- /metrics: prometheus-client's multiprocess mode; every worker writes its samples to one
  directory and a scrape of any worker returns the sum (router/accounting/metrics.py);
- with ``state = "redis://..."``: budgets, rate limits, the response cache and coalescing.
Without Redis, coalescing and the response cache are per worker, and a policy with budgets or
rate limits is refused (each worker would enforce the whole limit: N times the limit in all).

The parent forwards SIGTERM/SIGINT to the workers as SIGTERM (each drains within the policy's
``shutdown_grace_s``) and exits 0 once all of them have stopped; if a worker dies on its own,
the parent stops the others and exits 1 (it does not restart workers: a supervisor such as
systemd restarts the whole service). If the parent itself is killed (SIGKILL, OOM killer), the
kernel sends each worker SIGTERM (Linux: PR_SET_PDEATHSIG), so no worker is left serving.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from multiprocessing.connection import wait
from typing import Any

from policies import Policy
from router.errors import TierwiseError


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its server: plain values, picklable for "spawn"."""

    policy: str | None  # the policy file; None: the embedded demo
    ledger: str  # '' for none
    log_level: str
    access_log: bool
    metrics_dir: str  # PROMETHEUS_MULTIPROC_DIR for every worker


def multiplied_limits(policy: Policy) -> list[str]:
    """The policy keys that each worker would enforce on its own without shared state."""
    names = ("requests_per_minute", "tokens_per_minute", "usd_per_day", "usd_per_month")
    found = [f"[limits] {n}" for n in names if getattr(policy.limits, n) is not None]
    for key in policy.auth.keys:
        found += [f"[[auth.keys]] id={key.id!r} {n}" for n in names
                  if getattr(key, n) is not None]
    return found


def check_workers(policy: Policy, workers: int) -> str:
    """Refuse a worker count that would break a guarantee; else the one line that says what
    the workers share and what each keeps for itself."""
    if workers < 1:
        raise TierwiseError(f"--workers must be 1 or more (got {workers})")
    shared = policy.state != "memory"
    if not shared:
        keys = multiplied_limits(policy)
        if keys:
            raise TierwiseError(
                f"--workers {workers} without shared state would give each worker its own "
                f"budgets and rate limits ({', '.join(keys)}), {workers} times the limit in all. "
                'Fix: set state = "redis://HOST:6379/0" in the policy (docs/operations.md), '
                "or run with --workers 1")
    if shared:
        return (f"{workers} workers share budgets, rate limits, the response cache and "
                "coalescing through Redis, one ledger file and /metrics (summed over workers)")
    per_worker = "coalescing of identical requests in flight"
    if policy.cache.enabled:
        per_worker += " and the response cache"
    return (f"{workers} workers without Redis: per worker: {per_worker}; shared: the ledger "
            "file and /metrics (summed over workers)")


# How a worker ends a graceful stop: 0 (router.serving.server.run), or killed by a SIGTERM that
# came before its handler was installed (still starting: nothing to keep), or by SIGINT.
STOPPED = (0, -signal.SIGTERM, -signal.SIGINT)


def serve_workers(spec: WorkerSpec, workers: int, socks: list[socket.socket]) -> int:
    """Run `workers` processes on the listening sockets (one per worker, or one for all) until
    a signal or a worker's death; the exit code of `tierwise serve`."""
    own_dir = not spec.metrics_dir
    metrics_dir = spec.metrics_dir or tempfile.mkdtemp(prefix="tierwise-metrics-")
    spec = dataclasses.replace(spec, metrics_dir=metrics_dir)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker_main, args=(spec, socks[i % len(socks)], os.getpid()),
                             name=f"tierwise-worker-{i}") for i in range(workers)]
    stopping: list[int] = []  # the signals received, in order (a list: the handler appends)

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)
        # The first signal asks each worker for a graceful shutdown; a second SIGINT (Ctrl+C
        # again) is passed on as SIGINT, which makes uvicorn stop without waiting.
        forward = signal.SIGINT if len(stopping) > 1 and signum == signal.SIGINT else signal.SIGTERM
        _signal_all(procs, forward)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    failed: list[str] = []
    try:
        for proc in procs:
            if stopping:
                break  # asked to stop while starting: start no more
            proc.start()
        running = [p for p in procs if p.pid is not None]
        # Each started worker holds its own copy of its socket: the parent lets go of them, so
        # a worker's socket closes with it (its connections are not queued for nobody).
        for sock in socks:
            sock.close()
        if stopping:  # a worker started while the signal was handled did not get it
            _signal_all(running, signal.SIGTERM)
        while running:
            for sentinel in wait([p.sentinel for p in running]):
                proc = next(p for p in running if p.sentinel == sentinel)
                proc.join()
                running.remove(proc)
                if stopping and proc.exitcode in STOPPED:
                    continue
                # a worker died on its own (one fewer server is not what was asked for) or
                # failed while stopping: the exit code says so
                failed.append(f"worker {proc.pid} exited with code {proc.exitcode}")
                print(f"tierwise serve: {failed[-1]}"
                      + ("" if stopping else "; stopping the other workers"), file=sys.stderr)
                if not stopping:
                    stopping.append(signal.SIGTERM)
                    _signal_all(running, signal.SIGTERM)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for sock in socks:
            sock.close()  # idempotent
        if own_dir:
            shutil.rmtree(metrics_dir)
    return 1 if failed else 0


def _signal_all(procs: list[Any], signum: int) -> None:
    """Send `signum` to every started worker that has not been reaped."""
    for proc in procs:
        if proc.pid is None or proc.exitcode is not None:
            continue
        try:
            os.kill(proc.pid, signum)
        except ProcessLookupError:
            pass  # it exited between the check and the kill; its sentinel reports it


def _die_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the parent dies, even by SIGKILL (which
    the parent cannot forward): otherwise the workers live on as orphans, serving the port
    with nothing to stop them, and a restarted `tierwise serve` finds the port in use. SIGTERM:
    the worker drains and keeps its books as on a normal stop. Linux only (prctl)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"tierwise serve: worker {os.getpid()}: cannot ask to be stopped with the parent "
              f"(prctl: {os.strerror(ctypes.get_errno())})", file=sys.stderr)
    if os.getppid() != parent:  # the parent died before prctl: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(spec: WorkerSpec, sock: socket.socket, parent: int) -> None:
    """One worker: the single-process `tierwise serve` on an already bound socket."""
    _die_with_parent(parent)
    # Before prometheus-client is imported: it chooses its value store at import time.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = spec.metrics_dir
    import uvicorn

    from policies import load_policy
    from router.serving.app import build_app
    from router.serving.server import run

    policy = load_policy(spec.policy)
    ledger = None
    if spec.ledger:
        from router.accounting.ledger import Ledger

        ledger = Ledger(spec.ledger, policy.ledger.retention_days, policy.ledger.store_prompts)
    app = build_app(policy, ledger=ledger, freeze_gc=True)
    config = uvicorn.Config(app, log_level=spec.log_level, access_log=spec.access_log,
                            **app.server_options())
    try:
        run(config, sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it shut down on (Ctrl+C reaches the whole process
        # group); the lifespan has kept the books by then: a normal stop, not an error.
        pass
    finally:
        app.accountant.close()  # idempotent: the lifespan closed it already on a clean stop
        if ledger is not None:
            ledger.close()
