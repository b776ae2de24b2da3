"""`tierwise serve` as a real process in the tests, with the run's worker count.

Every test that starts a `tierwise serve` process builds its command line with serve_argv() and
is marked ``serve_process``. With TIERWISE_TEST_WORKERS=N in the environment, serve_argv() adds
`--workers N`: .ci/run reruns ``pytest -m serve_process`` so with 2 workers (issue 17: the tests
that start a server must pass with `--workers 2`). A test whose policy several workers refuse
(budgets or rate limits without Redis) adapts it when the limit is not its point (see
test_integrity_proxy's SIGTERM test), or else must skip naming the reason, never pass by testing
something else. tests/test_serve_workers.py checks that no test starts `tierwise serve` any
other way.
"""

from __future__ import annotations

import os
import sys

import pytest

SERVE = [sys.executable, "-m", "router", "serve"]


def workers() -> int:
    """The worker count TIERWISE_TEST_WORKERS asks for (1 when unset)."""
    value = os.environ.get("TIERWISE_TEST_WORKERS", "1")
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise pytest.UsageError(f"TIERWISE_TEST_WORKERS must be 1 or more (got {value!r})")
    return count


def serve_argv(*args: str) -> list[str]:
    """The argv of `tierwise serve ARGS`, plus `--workers N` from TIERWISE_TEST_WORKERS unless
    ARGS choose the count themselves."""
    extra = [] if "--workers" in args or workers() == 1 else ["--workers", str(workers())]
    return [*SERVE, *args, *extra]

