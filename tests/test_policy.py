"""Policy loading: the shipped policies load, and every kind of mistake gets one located message."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyError, load_policy, parse_policy, shipped_policy_path

GOOD_TIER = '[[tiers]]\nname = "a"\nmodel = "gpt-4o-mini"\nability = 1.0\n'


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    return info.value


def test_demo_policy_is_the_default() -> None:
    policy = load_policy()
    assert policy.name == "demo"
    assert [t.name for t in policy.tiers] == ["small", "medium", "large"]
    assert all(t.api_base == "builtin" for t in policy.tiers)
    prices = [t.blended_per_mtok for t in policy.tiers]
    assert prices == sorted(prices)


def test_real_provider_example_fills_prices_and_windows_from_litellm_map() -> None:
    policy = load_policy(shipped_policy_path("openai-anthropic.toml"))
    mini = policy.tier("mini")
    assert mini is not None and mini.input_per_mtok == pytest.approx(0.15)
    assert mini.context_window == 128000
    assert mini.api_key_env == "OPENAI_API_KEY"
    assert policy.ledger.store_prompts is False


def test_unknown_key_names_line_and_choices() -> None:
    err = error_of(GOOD_TIER + "temprature = 1\n")
    assert err.key == "tiers[0].temprature" and err.line == 5
    assert "unknown key" in str(err) and "ability" in str(err)


def test_unknown_top_level_key() -> None:
    err = error_of("qualty_target = 0.8\n" + GOOD_TIER)
    assert err.key == "qualty_target" and err.line == 1


def test_missing_model() -> None:
    err = error_of('[[tiers]]\nname = "a"\nability = 1\n')
    assert "missing required key 'model'" in str(err) and err.line == 1
    assert "model = " in (err.fix or "")


def test_tiers_must_be_ordered_cheapest_first() -> None:
    err = error_of('[[tiers]]\nname = "big"\nmodel = "gpt-4o"\nability = 2\n' + GOOD_TIER)
    assert "cheapest first" in str(err) and err.key == "tiers[1].model" and err.line == 7


def test_duplicate_names() -> None:
    err = error_of(GOOD_TIER + GOOD_TIER)
    assert "duplicate tier name 'a'" in str(err) and err.line == 6


@pytest.mark.parametrize("line,key", [
    ("quality_target = 1.5", "quality_target"),
    ("quality_target = \"high\"", "quality_target"),
    ("max_escalations = -1", "max_escalations"),
    ("timeout_s = 0", "timeout_s"),
    ("coalesce = 1", "coalesce"),
    ("state = \"postgres://x\"", "state"),
])
def test_bad_numbers_and_types(line: str, key: str) -> None:
    err = error_of(line + "\n" + GOOD_TIER)
    assert err.key == key and err.line == 1 and err.fix


def test_bad_tier_values() -> None:
    assert error_of(GOOD_TIER + "input_per_mtok = -1\noutput_per_mtok = 1\n").key == \
        "tiers[0].input_per_mtok"
    assert "only one of" in str(error_of(GOOD_TIER + "input_per_mtok = 1\n"))
    assert error_of(GOOD_TIER + 'api_base = "ftp://x"\n').key == "tiers[0].api_base"
    assert error_of(GOOD_TIER + 'api_key_env = "sk-live key"\n').key == "tiers[0].api_key_env"
    assert error_of(GOOD_TIER + "context_window = 0\n").key == "tiers[0].context_window"
    assert error_of(GOOD_TIER.replace("ability = 1.0", "ability = nan")).key == "tiers[0].ability"


def test_unknown_model_needs_prices_and_ability() -> None:
    err = error_of('[[tiers]]\nname = "x"\nmodel = "my/own-model"\nability = 1\n')
    assert "no known price" in str(err) and "input_per_mtok" in (err.fix or "")
    err = error_of('[[tiers]]\nname = "x"\nmodel = "my/own-model"\n'
                   'input_per_mtok = 1\noutput_per_mtok = 2\n')
    assert "no known ability" in str(err) and "calibrate" in (err.fix or "")


def test_no_tiers_and_broken_toml() -> None:
    assert "at least one" in str(error_of("tiers = []\n"))
    assert "missing required key 'tiers'" in str(error_of('name = "x"\n'))
    err = error_of('name = "x"\n[[tiers]\n')
    assert "not valid TOML" in str(err) and err.line == 2


def test_ledger_section_checked() -> None:
    err = error_of('[ledger]\npath = "l.db"\nretention = 3\n' + GOOD_TIER)
    assert err.key == "ledger.retention" and err.line == 3


def test_missing_file_message(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value) and "not found" in str(info.value)


def test_message_is_one_line_with_file_key_and_fix() -> None:
    text = str(error_of(GOOD_TIER + "supports_tools = \"yes\"\n"))
    assert text.startswith("p.toml:5: tiers[0].supports_tools: ") and "Fix: use true/false" in text
    assert "\n" not in text
