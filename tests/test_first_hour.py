"""A new user's first hour (issue 16, items 6 and 8): hints that work from a checkout, the
command line's help and stdin, policy shape errors in TOML's terms, and the proxy's answers
to the usual path mistakes. Real processes and real servers on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from guardkit import chat, guarded_proxy, serve, sim_policy

from policies import PolicyError, parse_policy

TIERWISE = [sys.executable, "-m", "router"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIERWISE, *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


# --- item 6: the training extra ------------------------------------------------------------

def test_missing_training_packages_hint_works_from_a_checkout() -> None:
    from classifiers.commands import _need

    hint = _need("tierwise_no_such_module_for_the_test")
    assert hint is not None and hint.startswith("missing tierwise_no_such_module_for_the_test: ")
    assert "pip install -e '.[train]'" in hint and "pip install 'tierwise[train]'" in hint
