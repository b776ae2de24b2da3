"""Request validation: each kind of bad input gets a 400/413 naming the field, and generated
bodies (hypothesis) never raise anything but InvalidRequestError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.access import LimitSettings
from router.errors import InvalidRequestError
from router.serving.validation import BodyTooLarge, parse_body

LIMITS = LimitSettings(max_body_bytes=2048, max_messages=3, max_content_chars=100, max_tokens=500)
OK = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def param_of(raw: bytes | str | dict[str, Any]) -> str | None:
    if isinstance(raw, dict):
        raw = json.dumps(raw)
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    with pytest.raises(InvalidRequestError) as info:
        parse_body(raw, LIMITS)
    assert info.value.status_code in (400, 413)
    return info.value.param


def test_a_good_body_passes() -> None:
    assert parse_body(json.dumps(OK).encode(), LIMITS) == OK


@pytest.mark.parametrize(("raw", "param"), [
    (b"{", None), (b"\xff\xfe", None), (b"[1,2]", None), (b'{"a": NaN}', None),
    (b'{"a": Infinity}', None), (b"1" * 5000, None), ("[" * 5000 + "]" * 5000, None),
    ({**OK, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({**OK, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({**OK, "messages": "hi"}, "messages"),
    ({**OK, "messages": [{"role": "user", "content": "x"}] * 4}, "messages"),
    ({**OK, "messages": [{"role": "user", "content": "x" * 101}]}, "messages[0].content"),
    ({**OK, "messages": [{"role": "user", "content": "x", "name": 3}]}, "messages[0].name"),
    ({**OK, "temperature": "hot"}, "temperature"), ({**OK, "temperature": 3}, "temperature"),
    ({**OK, "max_tokens": 0}, "max_tokens"), ({**OK, "max_tokens": True}, "max_tokens"),
    ({**OK, "max_tokens": 501}, "max_tokens"), ({**OK, "stream": "yes"}, "stream"),
    ({**OK, "model": 7}, "model"), ({**OK, "n": 0}, "n"), ({**OK, "stop": [1]}, "stop"),
    ({**OK, "tools": [{"type": "function"}]}, "tools[0].function.name"),
    ({**OK, "messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
])
def test_bad_inputs_name_the_field(raw: Any, param: str | None) -> None:
    assert param_of(raw) == param


def test_body_too_large_is_413() -> None:
    with pytest.raises(BodyTooLarge) as info:
        parse_body(b" " * 4096, LIMITS)
    assert info.value.status_code == 413


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
MESSAGE = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"]) | JSON,
    "content": st.text(max_size=120) | JSON, "name": JSON, "tool_calls": JSON})
BODY = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["auto", "small"]) | JSON,
    "messages": st.lists(MESSAGE, max_size=5) | JSON,
    "max_tokens": st.integers(-5, 1000) | JSON, "temperature": JSON, "stream": JSON,
    "stop": JSON, "tools": JSON, "n": JSON, "stream_options": JSON})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODY)
def test_generated_bodies_only_raise_invalid_request(body: dict[str, Any]) -> None:
    try:
        parse_body(json.dumps(body).encode(), LIMITS)
    except InvalidRequestError as exc:
        assert exc.status_code in (400, 413)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_generated_bytes_only_raise_invalid_request(raw: bytes) -> None:
    try:
        parse_body(raw, LIMITS)
    except InvalidRequestError:
        pass
