"""`tierwise serve` fails fast, as a real process, before it claims to serve (issue 16):
missing provider keys (item 2) and a port already in use (item 4)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from guardkit import free_port
from serveproc import serve_argv

pytestmark = pytest.mark.serve_process
SECRETISH = "sk-test-do-not-print-1234567890"

# Two tiers on the built-in simulator that name provider keys (one through a deployment).
POLICY = """
name = "keys"

[[tiers]]
name = "small"
model = "openai/sim-small"
api_base = "builtin"
api_key_env = "TW_TEST_KEY_SMALL"
ability = 1.0
input_per_mtok = 0.1
output_per_mtok = 0.1

[[tiers]]
name = "large"
model = "openai/sim-large"
api_base = "builtin"
api_key_env = "TW_TEST_KEY_LARGE"
ability = 2.0
input_per_mtok = 1.0
output_per_mtok = 1.0
deployments = [{ api_key_env = "TW_TEST_KEY_LARGE_EU" }, { }]
"""


def env_without_keys(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_TEST_KEY")}
    env.update(extra)
    return env


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    file = tmp_path / "keys.toml"
    file.write_text(POLICY)
    return file


def serve(*args: str, env: dict[str, str], timeout: float = 60
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(serve_argv("--ledger", "", *args), env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_missing_keys_refuse_to_start_naming_every_variable_per_tier(policy: Path) -> None:
    started = time.monotonic()
    out = serve("--policy", str(policy), "--port", str(free_port()),
                env=env_without_keys(TW_TEST_KEY_LARGE=SECRETISH))
    assert out.returncode == 2, out.stderr
    assert time.monotonic() - started < 30  # before any warm-up, let alone serving
    err = out.stderr
    assert "Traceback" not in err and "serving on" not in err
    assert f"missing provider keys for {policy}" in err
    assert "tier 'small' needs TW_TEST_KEY_SMALL" in err
    assert "tier 'large' needs TW_TEST_KEY_LARGE_EU" in err  # a deployment's variable
    assert "--allow-missing-keys" in err
    assert SECRETISH not in err  # names only, never a value


def test_allow_missing_keys_starts_not_ready_and_says_so(policy: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        serve_argv("--policy", str(policy), "--port", str(port), "--ledger", "",
                   "--log-level", "warning", "--allow-missing-keys"),
        env=env_without_keys(TW_TEST_KEY_LARGE=SECRETISH, TW_TEST_KEY_LARGE_EU=SECRETISH),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = None
        while ready is None:  # until it listens; then /readyz is 503 for the missing key
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "tierwise serve did not start listening"
            try:
                ready = httpx.get(url + "/readyz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.1)
        # the tier whose keys are set answers (the request also waits out the warm-up)
        answer = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "large", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200 and answer.headers["x-tierwise-tier"] == "large"
        ready = httpx.get(url + "/readyz", timeout=2)
        assert ready is not None and ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False
        assert body["missing_keys"] == {"small": ["TW_TEST_KEY_SMALL"]}
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
    assert "tierwise: warning: starting without provider keys (tier 'small' needs " \
           "TW_TEST_KEY_SMALL)" in err
    assert SECRETISH not in err


def test_all_keys_set_starts_ready(policy: Path) -> None:
    from guardkit import wait_ready

    port = free_port()
    process = subprocess.Popen(
        serve_argv("--policy", str(policy), "--port", str(port), "--ledger", "",
                   "--log-level", "warning"),
        env=env_without_keys(TW_TEST_KEY_SMALL="k", TW_TEST_KEY_LARGE="k",
                             TW_TEST_KEY_LARGE_EU="k"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", 60,
                   lambda: process.communicate(timeout=5)[0])
        assert "missing_keys" not in httpx.get(f"http://127.0.0.1:{port}/readyz").json()
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_port_in_use_is_said_before_serving_with_the_fix(taken_port: int) -> None:
    out = serve("--port", str(taken_port), env=env_without_keys())
    assert out.returncode == 2, out.stderr
    assert "serving on" not in out.stderr and "Traceback" not in out.stderr
    assert "Errno" not in out.stderr
    assert f"port {taken_port} on 127.0.0.1 is already in use" in out.stderr
    assert f"--port {taken_port + 1}" in out.stderr


def test_unknown_host_is_a_one_line_error() -> None:
    out = serve("--host", "no-such-host.invalid", "--port", str(free_port()),
                env=env_without_keys())
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot listen on --host no-such-host.invalid" in out.stderr
