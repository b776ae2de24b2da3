"""What `tierwise serve` checks before it claims to serve: provider keys and the address.

Each failure is one TierwiseError naming the problem and the fix (the CLI prints it and exits 2).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from router.errors import TierwiseError


def check_keys(policy: Any, source: str | None, allow: bool) -> None:
    """Every provider-key variable the policy names must be set, or `serve` does not start
    (with --allow-missing-keys it starts, and /readyz answers 503 naming them)."""
    missing = policy.missing_keys(os.environ)
    if not missing:
        return
    names = sorted({n for unset in missing.values() for n in unset})
    per_tier = "; ".join(f"tier {tier!r} needs {', '.join(unset)}"
                         for tier, unset in missing.items())
    where = source or "the embedded demo"
    if not allow:
        raise TierwiseError(
            f"missing provider keys for {where}: {per_tier}. Fix: set "
            f"{', '.join(names)} in the environment (e.g. `export {names[0]}=...`), or pass "
            "--allow-missing-keys to start anyway (those tiers fail, /readyz answers 503)")
    print(f"tierwise: warning: starting without provider keys ({per_tier}); requests to "
          "those tiers fail and /readyz answers 503 until tierwise serve is restarted with "
          f"{', '.join(names)} set", file=sys.stderr)


def check_port(host: str, port: int) -> None:
    """Say that the address is taken before claiming to serve on it (uvicorn would only
    print Errno 98 after our "serving on" line)."""
    bound_socket(host, port).close()


def worker_sockets(host: str, port: int, count: int) -> list[Any]:
    """`serve --workers N`'s listening sockets: on Linux one per worker, all on host:port with
    SO_REUSEPORT, so the kernel spreads new connections evenly over the workers (by a hash of
    the client's address and port). With one socket shared by all workers, whichever worker woke
    first accepted a burst of connections: wrk's 32 keep-alive connections split as unevenly as
    30/2, and the worker with 2 sat mostly idle (bench/WORKERS.md). Elsewhere: one socket that
    every worker accepts on (SO_REUSEPORT does not balance there).

    The address is first bound once without SO_REUSEPORT, so a port in use is bound_socket's
    one clear error even when the listener there has SO_REUSEPORT itself (another
    `tierwise serve --workers`), which the sockets below would otherwise join silently."""
    if port:
        bound_socket(host, port).close()
    if not sys.platform.startswith("linux") or count == 1:
        socks = [bound_socket(host, port)]
    else:
        socks = [bound_socket(host, port, reuse_port=True)]
        port = socks[0].getsockname()[1]  # --port 0: every socket on the port the first got
        with contextlib.ExitStack() as on_error:
            on_error.callback(lambda: [s.close() for s in socks])
            while len(socks) < count:
                socks.append(bound_socket(host, port, reuse_port=True))
            on_error.pop_all()
    for s in socks:
        s.listen(2048)  # uvicorn's default backlog
        s.set_inheritable(True)
    return socks


def bound_socket(host: str, port: int, reuse_port: bool = False) -> Any:
    """A socket bound to host:port as uvicorn binds it, or one line saying why it cannot be;
    with `reuse_port`, SO_REUSEPORT too (see worker_sockets)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise TierwiseError(f"cannot listen on --host {host}: {exc.strerror}. Fix: pass an "
                            "address of this machine, e.g. --host 127.0.0.1 or 0.0.0.0"
                            ) from None
    family, kind, proto, _, address = infos[0]
    probe = socket.socket(family, kind, proto)
    with contextlib.ExitStack() as on_error:
        on_error.callback(probe.close)
        # as uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is free, a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TierwiseError(
                    f"port {port} on {host} is already in use (another tierwise serve?). "
                    f"Fix: stop that process, or pass another port, e.g. --port {port + 1}"
                    ) from None
            if exc.errno == errno.EACCES:
                raise TierwiseError(
                    f"no permission to listen on port {port}. Fix: pass a port above 1023, "
                    "e.g. --port 8000") from None
            raise TierwiseError(f"cannot listen on {host}:{port}: {exc.strerror}. Fix: "
                                "pass another --host or --port") from None
        on_error.pop_all()  # bound: the caller owns it now
    return probe
