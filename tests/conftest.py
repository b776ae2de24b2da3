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
