"""The `tierwise` command line, run as a real process: route, score, serve, policy errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serveproc import serve_argv

TIERWISE = [sys.executable, "-m", "router"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIERWISE, *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_route_prints_the_decision() -> None:
    out = run("route", "What is 2+2?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tier: ") and "p_sufficient: small=" in out.stdout
    decision = json.loads(run("route", "--json", "What is 2+2?").stdout)
    assert set(decision["p_sufficient"]) == {"small", "medium", "large"}
    assert decision["tier"] in decision["p_sufficient"]


def test_score_one_line_out_per_line_in(tmp_path: Path) -> None:
    lines = [
        {"prompt": "hi"},
        {"messages": [{"role": "user", "content": "Integrate x^2 sin x dx."}]},
        "not json",
        {"nothing": 1},
        {"messages": [{"role": "robot", "content": "x"}]},
    ]
    file = tmp_path / "in.jsonl"
    file.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    out = run("score", str(file))
    assert out.returncode == 1  # some lines were bad
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert {"difficulty", "p_sufficient", "tier"} <= set(rows[0])
    assert set(rows[1]["p_sufficient"]) == {"small", "medium", "large"}
    assert "not valid JSON" in rows[2]["error"] and "'prompt'" in rows[3]["error"]
    assert "messages[0].role" in rows[4]["error"]
    assert "line 3" in out.stderr
    good = run("score", "-", stdin='{"prompt": "a"}\n{"prompt": "b"}\n')
    assert good.returncode == 0 and len(good.stdout.splitlines()) == 2


def test_score_missing_file() -> None:
    out = run("score", "/nonexistent/x.jsonl")
    assert out.returncode == 2 and "cannot read /nonexistent/x.jsonl" in out.stderr
    assert "Traceback" not in out.stderr


def test_invalid_policy_exits_with_located_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[tiers]]\nname = "a"\nmodel = "gpt-4o"\nabilty = 2\n')
    out = run("route", "--policy", str(bad), "hi")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{bad}:4: tiers[0].abilty: unknown key" in out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> str:
    port = free_port()
    ledger = tmp_path_factory.mktemp("ledger") / "ledger.db"  # not the working directory
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(serve_argv("--port", str(port), "--log-level", "warning",
                                       "--ledger", str(ledger)),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tierwise serve did not start: {proc.stderr.read()!r}")
        time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.serve_process
def test_serve_answers_the_openai_client(served: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is 2+2?"}])
    completion = raw.parse()
    tier = raw.headers["x-tierwise-tier"]
    assert tier in {"small", "medium", "large"}
    assert completion.choices[0].message.content.startswith(f"[sim-{tier} #")
    assert float(raw.headers["x-tierwise-difficulty"]) == pytest.approx(
        float(raw.headers["x-tierwise-difficulty"]))
    stream = client.chat.completions.create(
        model="large", stream=True, messages=[{"role": "user", "content": "Tell me more"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("[sim-large #")


@pytest.mark.serve_process
def test_serve_errors_are_openai_shaped(served: str) -> None:
    import openai
    from openai import OpenAI

    client = OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "nobody", "content": ""}])
    assert info.value.body["param"] == "messages[0].role"  # type: ignore[index]


def test_score_given_a_prompt_points_to_route() -> None:
    """A prompt typed where the file goes gets the command that scores one prompt."""
    out = run("score", "What is 2.5 squared?")
    assert out.returncode == 2 and "tierwise route" in out.stderr
    assert "Traceback" not in out.stderr
    # a missing file that looks like a path gets no such hint
    assert "tierwise route" not in run("score", "/nonexistent/x.jsonl").stderr
