"""router/accounting/gil.py: when background work sleeps to let the event loop have the GIL.

The clock and the sleep are the standard library's, replaced here by a clock the test moves, so
the rules are checked exactly (how much the yielding helps is bench/proxy/gil_stretch.py's job):
sleep after every `stretch_s` of work while sleeps come back on time; once one comes back late
(the loop is busy and kept the GIL), no more sleeps in that piece of work nor in any started
within `busy_for_s`; after that, yield again.
"""

from __future__ import annotations

import pytest

from router.accounting import gil


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.late = 0.0  # how much later than asked each sleep comes back
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds + self.late


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(gil, "_clock", c)
    monkeypatch.setattr(gil.time, "sleep", c.sleep)
    return c


def work(clock: Clock, yielder: gil.Yielder, steps: int, step_s: float) -> None:
    yielder.start()
    for _ in range(steps):
        yielder.tick()
        clock.now += step_s


def test_idle_loop_sleeps_after_every_stretch(clock: Clock) -> None:
    y = gil.Yielder(stretch_s=0.0001, sleep_s=0.0001, busy_s=0.001)
    work(clock, y, steps=50, step_s=0.00004)  # 2 ms of work in 40 us steps
    # a sleep once 100 us of work are done: every third step from the fourth on
    assert clock.sleeps == 16


def test_short_work_never_sleeps(clock: Clock) -> None:
    y = gil.Yielder(stretch_s=0.0001)
    work(clock, y, steps=2, step_s=0.00004)
    assert clock.sleeps == 0


def test_a_late_sleep_stops_yielding_for_a_while(clock: Clock) -> None:
    y = gil.Yielder(stretch_s=0.0001, sleep_s=0.0001, busy_s=0.001, busy_for_s=0.1)
    clock.late = 0.004  # the loop kept the GIL for the switch interval
    work(clock, y, steps=50, step_s=0.00004)
    assert clock.sleeps == 1  # and then the rest of the batch in one go
    clock.now += 0.05
    work(clock, y, steps=50, step_s=0.00004)  # within busy_for_s: as before Yielder
    assert clock.sleeps == 1
    clock.late = 0.0
    clock.now += 0.06  # busy_for_s has passed: yield again
    work(clock, y, steps=50, step_s=0.00004)
    assert clock.sleeps == 17
