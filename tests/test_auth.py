"""API key authentication: policy hashes and env keys, constant-time checks, no key leaks."""

from __future__ import annotations

import pytest

from policies.access import ApiKey, AuthSettings
from router.access.auth import (
    ANONYMOUS,
    AuthenticationError,
    Authenticator,
    hash_key,
    keys_from_env,
    presented_key,
)

SECRET = "sk-team-a-0123456789"


def auth_with(env: dict[str, str] | None = None) -> Authenticator:
    settings = AuthSettings(keys=(ApiKey("team-a", hash_key(SECRET), usd_per_day=1.0),),
                            keys_env="KEYS" if env is not None else None)
    return Authenticator(settings, environ=env or {})


def test_disabled_auth_lets_everyone_in_as_anonymous() -> None:
    assert Authenticator(AuthSettings(), environ={}).authenticate({}).id == ANONYMOUS


def test_policy_key_by_bearer_or_x_api_key() -> None:
    auth = auth_with()
    client = auth.authenticate({"authorization": f"Bearer {SECRET}"})
    assert client.id == "team-a" and client.key is not None and client.key.usd_per_day == 1.0
    assert auth.authenticate({"x-api-key": SECRET}).id == "team-a"
    assert auth.authenticate({"authorization": f"bearer   {SECRET}  "}).id == "team-a"


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer"}, {"authorization": "Basic abc"},
    {"authorization": "Bearer sk-wrong"}, {"x-api-key": SECRET + "x"},
    {"authorization": "Bearer \udcff"},
])
def test_bad_or_missing_keys_are_401_and_never_echoed(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError) as info:
        auth_with().authenticate(headers)
    err = info.value
    assert err.status_code == 401 and err.code == "invalid_api_key"
    body = err.to_openai()["error"]
    assert body["type"] == "invalid_request_error"  # type: ignore[index]
    for secret in ("sk-wrong", SECRET + "x", "abc"):
        assert secret not in err.message


def test_env_keys_with_and_without_ids() -> None:
    auth = auth_with({"KEYS": "ops:sk-ops-1, sk-bare-2 ,"})
    assert auth.authenticate({"authorization": "Bearer sk-ops-1"}).id == "ops"
    bare = auth.authenticate({"authorization": "Bearer sk-bare-2"}).id
    assert bare == "env-" + hash_key("sk-bare-2")[:8] and "sk-bare" not in bare
    assert auth.authenticate({"authorization": f"Bearer {SECRET}"}).id == "team-a"


def test_empty_env_fails_closed() -> None:
    auth = Authenticator(AuthSettings(keys_env="KEYS"), environ={})
    assert auth.enabled
    with pytest.raises(AuthenticationError):
        auth.authenticate({"authorization": "Bearer anything"})


def test_helpers() -> None:
    assert len(hash_key("x")) == 64
    assert [k.id for k in keys_from_env("a:1,b:2")] == ["a", "b"]
    assert presented_key({"api-key": " k "}) == "k"
