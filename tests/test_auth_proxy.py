"""Client API keys at the proxy over real HTTP: 401s in OpenAI's shape, open health paths,
and the key never echoed in a response or a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from guardkit import chat, guarded_proxy, sim_policy

from router.access.auth import hash_key
from router.serving.guard import current_key_id

POLICY_KEY = "sk-policy-team-a-7f3e9c"
ENV_KEY = "sk-env-ops-1b2c3d"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Any]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TIERWISE_TEST_KEYS", f"ops:{ENV_KEY}")
    extra = (f'[auth]\nkeys_env = "TIERWISE_TEST_KEYS"\n'
             f'[[auth.keys]]\nid = "team-a"\nsha256 = "{hash_key(POLICY_KEY)}"\n')
    try:
        with guarded_proxy(sim_policy(extra)) as (base, guard):
            yield base, guard
    finally:
        mp.undo()


@pytest.fixture
def url(served: tuple[str, Any]) -> str:
    return served[0]


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer sk-nope"}, {"authorization": f"Basic {POLICY_KEY}"},
    {"x-api-key": POLICY_KEY[:-1]},
])
def test_missing_or_wrong_key_is_401(url: str, headers: dict[str, str],
                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        r = httpx.post(url + "/v1/chat/completions", json=chat(), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    for secret in ("sk-nope", POLICY_KEY, POLICY_KEY[:-1]):
        assert secret not in r.text and secret not in str(r.headers) and secret not in caplog.text


@pytest.mark.parametrize(("headers", "key_id"), [
    ({"authorization": f"Bearer {POLICY_KEY}"}, "team-a"),
    ({"x-api-key": ENV_KEY}, "ops"),
])
def test_valid_keys_get_answers(url: str, headers: dict[str, str], key_id: str) -> None:
    r = httpx.post(url + "/v1/chat/completions", json=chat(), headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    assert POLICY_KEY not in str(r.headers) and ENV_KEY not in str(r.headers)


def test_other_v1_paths_need_a_key_health_does_not(url: str) -> None:
    assert httpx.get(url + "/v1/models").status_code == 401
    ok = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {POLICY_KEY}"})
    assert ok.status_code == 200
    assert httpx.get(url + "/healthz").status_code == 200
    assert httpx.get(url + "/readyz").status_code == 200


def test_openai_sdk_sends_the_key_as_bearer(url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key=POLICY_KEY, max_retries=0)
    answer = client.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content
    bad = openai.OpenAI(base_url=url + "/v1", api_key="sk-bad", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])


def test_router_listeners_see_the_key_id_never_the_key(served: tuple[str, Any]) -> None:
    url, guard = served
    seen: list[str | None] = []
    guard.app.state.router.listeners.append(lambda routing: seen.append(current_key_id()))
    for stream in (False, True):
        r = httpx.post(url + "/v1/chat/completions", json=chat(f"who am I {stream}",
                                                                  stream=stream),
                       headers={"authorization": f"Bearer {POLICY_KEY}"}, timeout=30)
        assert r.status_code == 200
    assert seen == ["team-a", "team-a"]
    assert current_key_id() is None
