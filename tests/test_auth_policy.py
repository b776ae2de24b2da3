"""The [auth], [limits] and [cache] policy sections: defaults, values, and located errors."""

from __future__ import annotations

import hashlib

import pytest

from policies import PolicyError, load_policy, parse_policy

TIERS = ('[[tiers]]\nname = "a"\nmodel = "gpt-4o-mini"\nability = 1.0\n'
         '[[tiers]]\nname = "b"\nmodel = "gpt-4o"\nability = 2.0\n')
SHA = hashlib.sha256(b"sk-test").hexdigest()


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    return info.value


def test_defaults_are_open_unlimited_uncached() -> None:
    policy = load_policy()
    assert not policy.auth.enabled
    assert policy.limits.usd_per_day is None and policy.limits.max_body_bytes == 4 * 1024 * 1024
    assert not policy.cache.enabled


def test_full_sections_load() -> None:
    policy = parse_policy(TIERS + f"""
[auth]
keys_env = "MY_KEYS"
[[auth.keys]]
id = "team-a"
sha256 = "{SHA}"
usd_per_day = 5
[[auth.keys]]
id = "team-b"
sha256 = "{SHA}"
[limits]
requests_per_minute = 60
tokens_per_minute = 1000
usd_per_day = 10
usd_per_month = 100.5
downgrade_at = 0.2
downgrade_tier = "a"
max_messages = 50
max_tokens = 4096
[cache]
enabled = true
ttl_s = 60
scope = "global"
""")
    assert policy.auth.enabled and policy.auth.keys_env == "MY_KEYS"
    assert [k.id for k in policy.auth.keys] == ["team-a", "team-b"]
    assert policy.auth.keys[0].usd_per_day == 5.0 and policy.auth.keys[1].usd_per_day is None
    assert policy.limits.requests_per_minute == 60 and policy.limits.usd_per_month == 100.5
    assert policy.limits.downgrade_tier == "a" and policy.limits.max_tokens == 4096
    assert policy.cache.enabled and policy.cache.ttl_s == 60.0 and policy.cache.scope == "global"


@pytest.mark.parametrize(("section", "key", "line"), [
    ("[limits]\nrequests_per_minit = 5\n", "limits.requests_per_minit", 10),
    ("[cache]\nttl = 5\n", "cache.ttl", 10),
    ("[auth]\nkey = 'x'\n", "auth.key", 10),
])
def test_unknown_keys_are_located(section: str, key: str, line: int) -> None:
    err = error_of(TIERS + section)
    assert err.key == key and err.line == line and "unknown key" in str(err)
    assert err.fix and "remove it or use one of" in err.fix


@pytest.mark.parametrize(("section", "key"), [
    ('[limits]\nusd_per_day = "5"\n', "limits.usd_per_day"),
    ("[limits]\nrequests_per_minute = 1.5\n", "limits.requests_per_minute"),
    ("[limits]\ndowngrade_at = 1.5\n", "limits.downgrade_at"),
    ("[limits]\nmax_body_bytes = 10\n", "limits.max_body_bytes"),
    ("[cache]\nenabled = 1\n", "cache.enabled"),
    ('[cache]\nscope = "everyone"\n', "cache.scope"),
    ('[auth]\nkeys_env = "not a name"\n', "auth.keys_env"),
])
def test_wrong_types_and_ranges_are_located(section: str, key: str) -> None:
    err = error_of(TIERS + section)
    assert err.key == key and err.line == 10 and "invalid value" in str(err) and err.fix


def test_a_plain_key_instead_of_its_hash_is_refused() -> None:
    err = error_of(TIERS + '[[auth.keys]]\nid = "a"\nsha256 = "sk-live-abc"\n')
    assert err.key == "auth.keys[0].sha256" and err.line == 11
    assert "never the key itself" in (err.fix or "")
    assert "sk-live-abc" in str(err)  # the value is shown so the user finds it; it is their file


def test_duplicate_key_ids_and_missing_fields() -> None:
    entry = f'[[auth.keys]]\nid = "a"\nsha256 = "{SHA}"\n'
    err = error_of(TIERS + entry + entry)
    assert "duplicate key id" in str(err) and err.key == "auth.keys[1].id" and err.line == 13
    err = error_of(TIERS + '[[auth.keys]]\nid = "a"\n')
    assert "missing required key 'sha256'" in str(err) and err.line == 9


def test_downgrade_tier_must_exist() -> None:
    err = error_of(TIERS + '[limits]\ndowngrade_tier = "tiny"\n')
    assert err.key == "limits.downgrade_tier" and "unknown tier" in str(err) and err.line == 10
