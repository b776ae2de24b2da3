"""How `tierwise serve` runs under uvicorn: the limits of the server itself, from the policy.

uvicorn on its own bounds neither how long a client may take to send its request nor how many
connections it holds: 800 connections sending their headers a byte at a time were all kept, and
real clients were refused once the process ran out of descriptors. And on SIGTERM it waits for
open streams without a deadline. `server_options(policy)` gives `uvicorn.run` what closes that:

- ``client_timeout_s``: a client has this long from a request's first byte (or from connecting)
  to its last; then the connection is closed (a request being read sees a disconnect);
- ``max_connections``: a connection beyond this many open is closed at once (it costs one
  descriptor for a moment, not one for as long as the client likes);
- ``shutdown_grace_s``: how long a shutdown waits for requests in flight (uvicorn's
  timeout_graceful_shutdown); the books are kept either way (router.serving.guard's lifespan).

`run(config, sockets)` runs the server so that a graceful stop on SIGTERM exits 0 (see there).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from policies import Policy


def protected_protocol(client_timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a request-read deadline and a connection cap (a class
    per policy: the limits are class attributes, not module state)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class ProtectedHttpToolsProtocol(HttpToolsProtocol):
        _client_timeout_s = client_timeout_s
        _max_connections = max_connections
        _reading: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > self._max_connections:
                transport.close()  # over the cap: refused at once (connection_lost cleans up)
                return
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._reading = self.loop.call_later(self._client_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._reading is not None:
                self._reading.cancel()
                self._reading = None

        def _too_slow(self) -> None:
            self._reading = None
            if not self.transport.is_closing():
                self.transport.close()

    return ProtectedHttpToolsProtocol


def server_options(policy: Policy) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` (see the module docstring)."""
    return {"http": protected_protocol(policy.client_timeout_s, policy.max_connections),
            "timeout_graceful_shutdown": max(1, round(policy.shutdown_grace_s))}


class Stopped(Exception):
    """SIGTERM asked the server to stop (raised by run()'s own handler, caught there)."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped


def run(config: Any, sockets: list[Any] | None = None) -> None:
    """``uvicorn.Server(config).run(sockets)``, returning normally after a graceful SIGTERM stop.

    uvicorn handles SIGTERM (drains, runs the lifespan's shutdown) and then re-raises it with
    the handler that was installed before it started: with the default one the process is
    killed by the signal after a clean stop, and `tierwise serve` exited 143 (a supervisor or
    a script reads that as a crash). This handler turns the re-raise into a return. Installed
    before uvicorn's own, it also covers a SIGTERM that arrives before uvicorn listens for it:
    that stops the start-up. SIGINT keeps uvicorn's behaviour (KeyboardInterrupt: exit 130)."""
    import uvicorn

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.Server(config).run(sockets=sockets)
    except Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
