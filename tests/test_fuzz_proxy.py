"""Thousands of generated malformed (and some valid) bodies against the full proxy over real
HTTP (uvicorn on loopback): never a 5xx, always OpenAI-shaped JSON errors."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from guardkit import guarded_proxy, sim_policy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROLES = ["user", "system", "assistant", "tool", "developer", "function", "bot", ""]
SCALAR = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
          | st.text(max_size=30))
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "nope"]) | JSON},
                             optional={"text": st.text(max_size=40) | JSON,
                                       "image_url": JSON})
MESSAGE = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(ROLES) | JSON,
    "content": st.text(max_size=200) | st.lists(PART, max_size=3) | JSON,
    "name": JSON, "tool_calls": JSON, "tool_call_id": JSON})
BODY = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["auto", "small", "large", "gpt-9"]) | JSON,
    "messages": st.lists(MESSAGE, max_size=4) | JSON,
    "stream": st.booleans() | JSON, "max_tokens": st.integers(-10, 10**9) | JSON,
    "max_completion_tokens": JSON, "temperature": st.floats() | JSON, "top_p": JSON,
    "n": st.integers(-1, 200) | JSON, "stop": JSON, "tools": JSON, "tool_choice": JSON,
    "response_format": JSON, "stream_options": JSON, "logit_bias": JSON, "seed": JSON,
    "user": JSON})


def encode(body: Any) -> bytes:
    # allow_nan: NaN/Infinity bodies are part of the attack surface
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


# Nearly valid: good messages, then one field of any type (reaches the engine when it is valid).
GOOD_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]),
                                      "content": st.text(min_size=1, max_size=60)})
NEAR = st.builds(lambda msgs, extra: {"model": "auto", "messages": msgs, **extra},
                 st.lists(GOOD_MESSAGE, min_size=1, max_size=3),
                 st.dictionaries(st.sampled_from(["max_tokens", "temperature", "stream", "n",
                                                  "stop", "top_p", "user", "seed", "tools"]),
                                 SCALAR | JSON, max_size=2))

RAW = (st.builds(encode, BODY)
       | st.builds(encode, NEAR)
       | st.builds(encode, JSON)
       | st.binary(max_size=200)
       | st.builds(lambda b, cut: encode(b)[:cut], BODY, st.integers(0, 200))
       | st.sampled_from([b"", b"null", b"[]", b"{}", b'{"messages": []}', b"[" * 10000,
                          b'{"a":' * 5000,
                          b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
                          b'{"max_tokens": 1e999}', b"\xef\xbb\xbf{}", b"{\"x\": 1}" * 3]))

STATUS: Counter[int] = Counter()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    extra = "[limits]\nmax_body_bytes = 65536\nmax_tokens = 4096\n"
    with guarded_proxy(sim_policy(extra)) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as c:
        yield c
    print("fuzz statuses:", dict(STATUS))


def check(r: httpx.Response) -> None:
    STATUS[r.status_code] += 1
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["type"]


EXAMPLES = int(os.environ.get("TIERWISE_FUZZ_EXAMPLES", "2000"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(raw=RAW, path=st.sampled_from(["/v1/chat/completions"] * 4 + ["/v1/route"]),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form"]))
def test_generated_bodies_never_get_a_5xx(client: httpx.Client, raw: bytes, path: str,
                                          content_type: str) -> None:
    check(client.post(path, content=raw, headers={"content-type": content_type}))


def test_a_batch_of_valid_requests_still_works(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json={"model": "auto", "messages": [
        {"role": "user", "content": "still alive?"}]})
    assert r.status_code == 200
