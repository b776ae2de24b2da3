"""Policy keys of serving: response_checks, coalesce, deployments / retries / cooldown_s,
transport.
Each mistake gets one located message (file, line, key, fix)."""

from __future__ import annotations

import pytest

from policies import PolicyError, parse_policy
from policies.schema import Deployment

TIER = ('[[tiers]]\nname = "a"\nmodel = "openai/x"\nability = 1.0\n'
        'input_per_mtok = 1\noutput_per_mtok = 1\n')


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    return info.value


def test_defaults() -> None:
    policy = parse_policy(TIER)
    assert policy.response_checks == ("empty", "length", "json", "refusal")
    assert policy.coalesce is True
    assert policy.tiers[0].deployments == () and policy.tiers[0].retries == 1
    assert policy.tiers[0].transport == "auto"


def test_response_checks() -> None:
    assert parse_policy('response_checks = ["json", "empty", "json"]\n' + TIER
                        ).response_checks == ("json", "empty")
    assert parse_policy("response_checks = []\n" + TIER).response_checks == ()
    err = error_of('name = "p"\nresponse_checks = ["empty", "toxicity"]\n' + TIER)
    assert err.key == "response_checks" and err.line == 2
    assert '"refusal"' in (err.fix or "")


def test_deployments_inherit_from_the_tier() -> None:
    policy = parse_policy(TIER + 'api_key_env = "KEY_A"\nretries = 2\ncooldown_s = 5\n'
                          'deployments = [{ api_base = "http://a.test/v1" },\n'
                          '  { model = "openai/y", api_base = "http://b.test/v1", '
                          'api_key_env = "KEY_B", weight = 3 }]\n')
    tier = policy.tiers[0]
    assert tier.retries == 2 and tier.cooldown_s == 5.0
    assert tier.deployments == (
        Deployment(model="openai/x", name="a-0", api_base="http://a.test/v1",
                   api_key_env="KEY_A"),
        Deployment(model="openai/y", name="a-1", api_base="http://b.test/v1",
                   api_key_env="KEY_B", weight=3))


def test_deployments_as_array_of_tables_locate_errors_per_tier() -> None:
    text = (TIER + TIER.replace('"a"', '"b"').replace("= 1\n", "= 2\n")
            + '[[tiers.deployments]]\napi_base = "http://ok.test/v1"\n'
            + '[[tiers.deployments]]\napi_bse = "http://typo.test/v1"\n')
    err = error_of(text)
    assert err.key == "tiers[1].deployments[1].api_bse" and err.line == 16
    assert "unknown key" in str(err) and "api_base" in (err.fix or "")


@pytest.mark.parametrize("line,key,fragment", [
    ('deployments = []', "tiers[0].deployments", "non-empty"),
    ('deployments = ["http://a.test"]', "tiers[0].deployments[0]", "must be a table"),
    ('deployments = [{ weight = 0 }]', "tiers[0].deployments[0].weight", "> 0"),
    ('deployments = [{ api_base = "ftp://x" }]', "tiers[0].deployments[0].api_base", "http"),
    ('retries = -1', "tiers[0].retries", ">= 0"),
    ('cooldown_s = "long"', "tiers[0].cooldown_s", "seconds"),
    ('transport = "http2"', "tiers[0].transport", '"litellm"'),
])
def test_bad_deployment_keys(line: str, key: str, fragment: str) -> None:
    err = error_of(TIER + line + "\n")
    assert err.key == key and err.line == 7, (err.key, err.line)
    assert fragment in str(err)
