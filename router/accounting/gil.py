"""Background work that lets the event loop have the GIL: `Yielder`.

The accounting thread and the ledger writer hold the GIL while they work. At low load the event
loop sleeps in epoll between requests; woken by an answer while a background thread is in a
1-2 ms stretch, it waited for all of it, and those waits were most of the proxy's p99 at
concurrency 1 (bench/PROFILE.md section 8). So background work sleeps a moment after every
~0.1 ms of it: a sleep lets the GIL go long enough for a waiting loop to take it (merely releasing
and retaking it, as sleep(0) does, usually beats the waiter to it).

Under load the loop holds the GIL nearly all the time, and a thread that let it go waits up to
the switch interval (5 ms) to get it back: yielding every 0.1 ms would then starve the
background work (the accounting fell behind at concurrency 32, and the proxy's CPU per request
rose 40 %). So once a sleep comes back late, the loop is busy: the rest of that piece of work,
and any other started within the next 0.1 s, runs without yielding, as it did before.
"""

from __future__ import annotations

import time

_clock = time.perf_counter


class Yielder:
    """Call `start()` before a piece of work and `tick()` between its small steps."""

    __slots__ = ("stretch_s", "sleep_s", "busy_s", "busy_for_s", "_pause", "_busy_until")

    def __init__(self, stretch_s: float = 0.0001, sleep_s: float = 0.0001,
                 busy_s: float = 0.001, busy_for_s: float = 0.1) -> None:
        self.stretch_s = stretch_s  # work this long between sleeps
        self.sleep_s = sleep_s
        self.busy_s = busy_s  # a sleep that comes back this late: the loop is busy
        self.busy_for_s = busy_for_s  # ... and is taken to stay busy this long
        self._pause = 0.0
        self._busy_until = 0.0

    def start(self) -> None:
        now = _clock()
        self._pause = float("inf") if now < self._busy_until else now + self.stretch_s

    def tick(self) -> None:
        if _clock() < self._pause:
            return
        before = _clock()
        time.sleep(self.sleep_s)
        now = _clock()
        if now - before > self.busy_s:
            # late: another thread kept the GIL; yielding again would only queue us behind it
            self._pause = float("inf")
            self._busy_until = now + self.busy_for_s
        else:
            self._pause = now + self.stretch_s
