"""How `tierwise serve` stops, as a real process: a graceful SIGTERM exits 0 (uvicorn re-raises
the signal after its shutdown, which used to end the process with 143), and uvicorn's own
shutdown lines are still logged at the info level after the warm-up (the embedded demo's
simulated upstream used to reconfigure uvicorn's loggers to "warning" when it started)."""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest
from guardkit import free_port, wait_ready
from serveproc import serve_argv, workers

pytestmark = pytest.mark.serve_process


def test_sigterm_after_warm_up_exits_0_and_logs_the_shutdown(tmp_path):
    port = free_port()
    proc = subprocess.Popen(serve_argv("--port", str(port), "--ledger", ""), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # /readyz 200: the warm-up is done, the simulated upstream of the demo is running
        wait_ready(proc, url, 90, lambda: proc.communicate(timeout=10)[1])
        answer = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # one server process per worker; each says it stopped, as uvicorn does at the info level
    assert err.count("INFO:     Shutting down") == workers(), err
    assert err.count("INFO:     Finished server process") == workers(), err
    # and none of the info lines of the simulator's own uvicorn (a server on another port)
    assert err.count("INFO:     Started server process") == workers(), err
    assert all(f"127.0.0.1:{port} " in line for line in err.splitlines()
               if "Uvicorn running on" in line), err
