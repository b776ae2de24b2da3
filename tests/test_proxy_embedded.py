"""`tierwise serve` with no policy and no keys: the demo policy on the built-in simulated upstream.

Runs the real command in a subprocess (as a new user would) and talks to it with the openai
client: a routed answer, its headers, a stream, a pinned tier, and readiness within a minute.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from guardkit import free_port, wait_ready
from serveproc import serve_argv

MODEL = Path(__file__).resolve().parent.parent / "classifiers" / "model" / "model.onnx"

pytestmark = [pytest.mark.skipif(
    not MODEL.is_file() and not os.environ.get("TIERWISE_REQUIRE_ALL"),
    reason="the shipped difficulty model (classifiers/model/model.onnx) is not trained yet"),
    pytest.mark.serve_process]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(
        serve_argv("--port", str(port), "--log-level", "warning",
                   "--ledger", str(tmp_path_factory.mktemp("ledger") / "ledger.db")),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, 60, lambda: process.stdout.read())  # type: ignore[union-attr]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_demo_routes_and_answers_without_keys(demo: str) -> None:
    client = openai.OpenAI(base_url=demo + "/v1", api_key="none", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}])
    tier = raw.headers["x-tierwise-tier"]
    assert tier in {"small", "medium", "large"}
    assert raw.headers["x-tierwise-model"] == f"openai/sim-{tier}"
    assert raw.parse().choices[0].message.content.startswith(f"[sim-{tier} #")
    # the server scored it with the shipped model, the same one this process loads
    from classifiers import default_scorer

    expected = default_scorer().score([{"role": "user",
                                        "content": "What is the capital of France?"}])
    assert float(raw.headers["x-tierwise-difficulty"]) == pytest.approx(expected.difficulty,
                                                                        abs=1e-4)


def test_demo_stream_and_pin(demo: str) -> None:
    client = openai.OpenAI(base_url=demo + "/v1", api_key="none", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="large", messages=[{"role": "user", "content": "hi"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[sim-large #") and text.endswith(".")
    assert [m.id for m in client.models.list()] == ["auto", "small", "medium", "large"]
