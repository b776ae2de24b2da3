"""Policy warnings: problems that do not stop a policy from loading, but that a user must see
(issue 16, item 1: tier abilities that do not increase with price)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from policies import parse_policy
from router.decider import Decider

TIER = '[[tiers]]\nname = "{}"\nmodel = "openai/m-{}"\nability = {}\ninput_per_mtok = {}\n' \
       'output_per_mtok = {}\n'


def policy_text(*tiers: tuple[str, float, float]) -> str:
    """tiers: (name, ability, price per 1M tokens in and out), cheapest first."""
    return "\n".join(TIER.format(n, n, a, p, p) for n, a, p in tiers)


def test_abilities_falling_with_price_warn_naming_file_and_tiers() -> None:
    policy = parse_policy(policy_text(("mini", 1.0, 0.1), ("mid", 2.0, 1.0), ("top", 1.4, 5.0)),
                          source="p.toml")
    assert len(policy.warnings) == 1
    warning = policy.warnings[0]
    assert "\n" not in warning  # one line
    assert warning.startswith("p.toml: tier abilities do not increase with price")
    assert "'top' (ability 1.4) is no more able than the cheaper 'mid' (ability 2)" in warning
    assert "Fix: set ability" in warning


def test_equal_ability_at_a_higher_price_warns_too() -> None:
    policy = parse_policy(policy_text(("a", 1.0, 0.1), ("b", 1.0, 1.0)), source="p.toml")
    assert "'b' (ability 1) is no more able than the cheaper 'a'" in policy.warnings[0]


def test_monotone_policies_do_not_warn() -> None:
    assert parse_policy(policy_text(("a", 1.0, 0.1), ("b", 1.5, 1.0), ("c", 2.5, 3.0))
                        ).warnings == ()
    assert parse_policy(policy_text(("only", 1.0, 0.1))).warnings == ()
    from policies import load_policy

    assert load_policy().warnings == ()  # the embedded demo


def test_router_logs_the_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    policy = parse_policy(policy_text(("a", 2.0, 0.1), ("b", 1.0, 1.0)), source="p.toml")
    with caplog.at_level(logging.WARNING, logger="tierwise.policy"):
        Decider(policy)
    records = [r for r in caplog.records if r.name == "tierwise.policy"]
    assert len(records) == 1
    assert "p.toml: tier abilities do not increase with price" in records[0].getMessage()


def test_tierwise_route_prints_the_warning_and_still_answers(tmp_path: Path) -> None:
    file = tmp_path / "p.toml"
    file.write_text(policy_text(("a", 2.0, 0.1), ("b", 1.0, 1.0)))
    out = subprocess.run([sys.executable, "-m", "router", "route", "--policy", str(file), "hi"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tier: ")
    assert f"tierwise: warning: {file}: tier abilities do not increase with price" in out.stderr
