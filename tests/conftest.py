"""Shared test helpers. Tests use real servers on loopback; nothing of ours is mocked."""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of a system binary a test needs; skip without it, but fail in CI (see .ci/run)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("TIERWISE_REQUIRE_ALL"):
            pytest.fail(reason + "; CI must install it")
        pytest.skip(reason)
    return path


# --- serving (issue 4): loopback upstream that misbehaves on purpose, servers in threads ---------
# Owned by the serving engineer; helpers live in tests/upstreams.py.

from collections.abc import AsyncIterator, Iterator  # noqa: E402

from upstreams import (  # noqa: E402
    TIERS,
    MisbehavingUpstream,
    make_policy,
    start_proxy,
)

from router.upstream.simulator import BackgroundServer  # noqa: E402


@pytest.fixture(scope="session")
def bad_upstream() -> Iterator[MisbehavingUpstream]:
    """One misbehaving upstream per session (a uvicorn thread); `.url` is its base URL."""
    upstream = MisbehavingUpstream()
    server = BackgroundServer(upstream.app).start()
    upstream.url = server.url  # type: ignore[attr-defined]
    yield upstream
    server.stop()


@pytest.fixture
def upstream(bad_upstream: MisbehavingUpstream) -> MisbehavingUpstream:
    """The session's misbehaving upstream with its counters reset for this test."""
    bad_upstream.reset()
    return bad_upstream


@pytest.fixture(scope="session")
def proxy(bad_upstream: MisbehavingUpstream) -> Iterator[str]:
    """URL of a proxy (uvicorn thread) whose tiers are the behaviours of the test upstream."""
    from router.serving.proxy import create_app

    policy = make_policy(bad_upstream.url, *TIERS, header="max_escalations = 1\n")
    server = start_proxy(create_app(policy))  # the shipped difficulty scorer
    yield server.url
    server.stop()


@pytest.fixture
async def close_passthrough() -> AsyncIterator[None]:
    """Close the pass-through's connection pool of this test's event loop at its end (each
    async test has its own loop; an unclosed pool is reported at interpreter exit)."""
    yield
    import sys

    passthrough = sys.modules.get("router.upstream.passthrough")
    if passthrough is not None:
        await passthrough.close_default_client()
