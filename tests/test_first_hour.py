"""A new user's first hour (issue 16, items 6 and 8): hints that work from a checkout, the
command line's help and stdin, policy shape errors in TOML's terms, and the proxy's answers
to the usual path mistakes. Real processes and real servers on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from guardkit import chat, guarded_proxy, serve, sim_policy

from policies import PolicyError, parse_policy

TIERWISE = [sys.executable, "-m", "router"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TIERWISE, *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


# --- item 6: the training extra ------------------------------------------------------------

def test_missing_training_packages_hint_works_from_a_checkout() -> None:
    from classifiers.commands import _need

    hint = _need("tierwise_no_such_module_for_the_test")
    assert hint is not None and hint.startswith("missing tierwise_no_such_module_for_the_test: ")
    assert "pip install -e '.[train]'" in hint and "pip install 'tierwise[train]'" in hint


# --- item 8: the command line --------------------------------------------------------------

def test_help_is_for_users_not_developers() -> None:
    out = run("--help")
    assert out.returncode == 0
    assert "cheapest model tier" in out.stdout and "tierwise COMMAND --help" in out.stdout
    for note in ("bench/", "import", "litellm", "asyncio"):
        assert note not in out.stdout, note


def test_route_reads_the_prompt_from_stdin() -> None:
    direct = run("route", "--json", "Write a haiku about the sea.")
    piped = run("route", "--json", stdin="Write a haiku about the sea.\n")
    dashed = run("route", "--json", "-", stdin="Write a haiku about the sea.")
    assert direct.returncode == piped.returncode == dashed.returncode == 0, piped.stderr
    assert direct.stdout == piped.stdout == dashed.stdout
    empty = run("route", "-", stdin="")
    assert empty.returncode == 2 and "stdin was empty" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_calibrate_target_shares_must_sum_to_one(tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text('{"prompt": "hi"}\n')
    out = run("calibrate", "target", "--traffic", str(traffic), "--tiers", "gpt-4o-mini,gpt-4o",
              "--share", "0.7,0.2")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--share 0.7,0.2: the shares sum to 0.9, not 1" in out.stderr


@pytest.mark.parametrize("text,problem", [
    ('[tiers]\nname = "a"\nmodel = "gpt-4o"\n', "a single [tiers] table"),
    ('tiers = "a"\n', "invalid value 'a'"),
    ('name = "p"\n', "missing required key 'tiers' (no [[tiers]] table)"),
    ("tiers = []\n", "needs at least one [[tiers]] table"),
    ('[[tiers.deployments]]\napi_base = "http://x"\n', "[[tiers.deployments]] without a "
                                                        "[[tiers]] table"),
])
def test_tiers_shape_errors_speak_of_tiers_tables(text: str, problem: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    message = str(info.value)
    assert message.startswith("p.toml:") and problem in message
    assert "Fix: write each tier as its own [[tiers]] table (double brackets)" in message


# --- item 8: the proxy's paths and the model field -----------------------------------------

def test_trailing_slash_is_served_and_a_missing_v1_gets_a_hint() -> None:
    with guarded_proxy(sim_policy()) as (url, _):
        slash = httpx.post(url + "/v1/chat/completions/", json=chat(), timeout=30)
        assert slash.status_code == 200, slash.text
        assert slash.headers["x-tierwise-tier"] in {"small", "large"}
        assert httpx.get(url + "/v1/models/", timeout=30).status_code == 200
        bare = httpx.post(url + "/chat/completions", json=chat(), timeout=30)
        assert bare.status_code == 404
        error = bare.json()["error"]
        assert error["code"] == "not_found"
        assert "the OpenAI API is under /v1: /v1/chat/completions" in error["message"]
        assert f"base_url is {url}/v1" in error["message"]
        other = httpx.get(url + "/v2/nothing", timeout=30).json()["error"]["message"]
        assert "endpoints: " in other and "/v1/chat/completions" in other


def test_proxy_app_without_the_guard_says_no_trailing_slash() -> None:
    from guardkit import LengthScorer

    from router.serving.proxy import create_app

    app = create_app(parse_policy(sim_policy()), scorer=LengthScorer())
    with serve(app) as url:
        slash = httpx.post(url + "/v1/route/", json=chat(), timeout=30)
        assert slash.status_code == 404  # not a bare 307 a POST would not follow
        assert "use /v1/route (no trailing slash)" in slash.json()["error"]["message"]


def test_missing_or_null_model_is_routed_as_the_alias() -> None:
    with guarded_proxy(sim_policy()) as (url, _):
        messages = chat()["messages"]
        for body in ({"messages": messages}, {"model": None, "messages": messages}):
            answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-tierwise-tier"] == "small"  # LengthScorer: easy
        unknown = httpx.post(url + "/v1/chat/completions", json={**chat(), "model": "gpt-5"},
                             timeout=30)
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "model_not_found"
