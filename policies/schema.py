"""The policy schema: what each key of a policy TOML means, its type, default and valid range.

Policy is data. Every key is declared once here with its check, so an unknown key, a wrong type
or an out-of-range number is reported with the key's name and the fix, never silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from classifiers import SCORERS
from policies.access import AuthSettings, CacheSettings, LimitSettings

REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One allowed key: its type(s), default, an optional range check and a hint for the fix."""

    types: tuple[type, ...]
    default: Any = None
    check: Callable[[Any], bool] | None = None
    expect: str = ""

    def describe(self) -> str:
        names = "a number" if self.types == NUMBER else " or ".join(
            _type_name(t) for t in self.types)
        return f"{names}{' ' + self.expect if self.expect else ''}"


def _type_name(t: type) -> str:
    return {str: "a string", float: "a number", int: "an integer", bool: "true/false",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v: float) -> bool:
    return math.isfinite(v) and v >= 0


def _probability(v: float) -> bool:
    return 0 < v < 1


def _finite(v: float) -> bool:
    return math.isfinite(v)


NUMBER = (int, float)

_ZONE_HINT = '(an electricity-mix zone code such as "FRA", "USA", "SWE" or "WOR")'


def _zone(v: str) -> bool:
    return v.isascii() and v.isalpha() and 2 <= len(v) <= 4

RESPONSE_CHECKS = ("empty", "length", "json", "refusal")

ROUTER_KEYS: dict[str, Key] = {
    "name": Key((str,), "policy"),
    "alias": Key((str,), "auto", lambda v: bool(v.strip()), "(not empty)"),
    "quality_target": Key(NUMBER, 0.8, _probability, "between 0 and 1, e.g. 0.8"),
    "min_confidence": Key(NUMBER, 0.6, lambda v: 0.5 <= v < 1, "between 0.5 and 1, e.g. 0.6"),
    "decision_noise": Key(NUMBER, 0.5, _positive, "> 0 (logit units), e.g. 0.5"),
    # The difficulty scorer: "fast" (a linear table, microseconds) or "accurate" (plus a MiniLM
    # sentence encoder, ~5 ms per request on one core): classifiers/model/MODEL_CARD.md
    "scorer": Key((str,), SCORERS[0], lambda v: v in SCORERS,
                  " or ".join(f'"{s}"' for s in SCORERS)),
    "max_escalations": Key((int,), 2, lambda v: v >= 0, ">= 0"),
    "coalesce": Key((bool,), True),
    # Identical requests of different API keys share one upstream call only when this is true
    # (one tenant would otherwise learn what another asked, and get its answer for nothing).
    "coalesce_across_keys": Key((bool,), False),
    "timeout_s": Key(NUMBER, 60.0, _positive, "> 0 seconds"),
    # The longest one upstream call may take, start to end (timeout_s bounds the gaps between
    # its events: a trickling stream would otherwise never end).
    "max_call_s": Key(NUMBER, 600.0, _positive, "> 0 seconds"),
    # `tierwise serve` itself (router/serving/server.py): the time a client has to send its
    # request, the connections held open at once, the wait for requests in flight at shutdown
    "client_timeout_s": Key(NUMBER, 30.0, _positive, "> 0 seconds"),
    "max_connections": Key((int,), 1000, lambda v: v > 0, "> 0 connections"),
    "shutdown_grace_s": Key(NUMBER, 30.0, _positive, "> 0 seconds"),
    "state": Key((str,), "memory", lambda v: v == "memory" or v.startswith(("redis://", "rediss://")),
                 '"memory" or a "redis://host:port/db" URL'),
    "tiers": Key((list,), REQUIRED),
    "ledger": Key((dict,), None),
    # Electricity-mix zone for energy/CO2e estimates (ecologits code, ISO 3166-1 alpha-3 such as
    # "FRA", or "WOR" for the world mix) of tiers and deployments that set none.
    "zone": Key((str,), None, lambda v: _zone(v), _ZONE_HINT),
    # Inside a tier with deployments: serve from the healthy one with the lowest carbon intensity.
    "carbon_aware": Key((bool,), False),
    # Static gCO2e/kWh by zone code or deployment name; overrides ecologits' zone data.
    "zone_intensity": Key((dict,), None, lambda v: all(
        isinstance(x, NUMBER) and not isinstance(x, bool) and _non_negative(x)
        for x in v.values()), '(a table of gCO2e/kWh >= 0, e.g. { FRA = 40, "eu-1" = 25 })'),
    # [auth], [limits], [cache]: checked in policies/access_keys.py
    "auth": Key((dict,), None),
    "limits": Key((dict,), None),
    "cache": Key((dict,), None),
    # Non-stream answers failing one of these checks are re-asked on the next tier (escalation).
    "response_checks": Key((list,), ("empty", "length", "json", "refusal"),
                           lambda v: all(c in RESPONSE_CHECKS for c in v),
                           'a list drawn from "empty", "length", "json", "refusal"'),
}

TIER_KEYS: dict[str, Key] = {
    "name": Key((str,), REQUIRED, lambda v: bool(v.strip()) and "/" not in v,
                "(not empty, no '/')"),
    "model": Key((str,), REQUIRED, lambda v: bool(v.strip()),
                 '(a litellm model, e.g. "openai/gpt-4o")'),
    "api_base": Key((str,), None, lambda v: v == "builtin" or v.startswith(("http://", "https://")),
                    '"builtin" or an http(s):// URL'),
    "api_key_env": Key((str,), None, lambda v: v.replace("_", "").isalnum(),
                       "(the NAME of an environment variable, not the key itself)"),
    "ability": Key(NUMBER, None, _finite, "(finite, in logit units, e.g. 1.5)"),
    "context_window": Key((int,), None, lambda v: v > 0, "> 0 tokens"),
    "input_per_mtok": Key(NUMBER, None, _non_negative, ">= 0 USD per 1M input tokens"),
    "output_per_mtok": Key(NUMBER, None, _non_negative, ">= 0 USD per 1M output tokens"),
    "supports_tools": Key((bool,), None),
    "supports_vision": Key((bool,), None),
    "zone": Key((str,), None, lambda v: _zone(v), _ZONE_HINT),
    # The model whose energy profile ecologits should use when it does not know `model` (a
    # self-hosted or simulated model), e.g. "gpt-4o-mini".
    "energy_model": Key((str,), None, lambda v: bool(v.strip()), '(e.g. "gpt-4o-mini")'),
    "timeout_s": Key(NUMBER, None, _positive, "> 0 seconds"),
    # Several deployments of one tier are balanced by litellm.Router (retries, cooldowns).
    "deployments": Key((list,), None, lambda v: bool(v), "(a non-empty list of tables)"),
    "retries": Key((int,), 1, lambda v: v >= 0, ">= 0 (litellm.Router retries across deployments)"),
    "cooldown_s": Key(NUMBER, 30.0, _non_negative, ">= 0 seconds a failing deployment rests"),
    # "auto": OpenAI-protocol tiers (openai/, hosted_vllm/, builtin) skip litellm's translation
    # and go through router/upstream/passthrough.py (~0.2 ms instead of ~4 ms CPU per call).
    "transport": Key((str,), "auto", lambda v: v in ("auto", "litellm"), '"auto" or "litellm"'),
}

DEPLOYMENT_KEYS: dict[str, Key] = {
    "name": Key((str,), None, lambda v: bool(v.strip()), "(unique in the tier; default tier-<n>)"),
    "zone": Key((str,), None, lambda v: _zone(v), _ZONE_HINT),
    "model": Key((str,), None, lambda v: bool(v.strip()), "(a litellm model; default: the tier's)"),
    "api_base": Key((str,), None, lambda v: v == "builtin" or v.startswith(("http://", "https://")),
                    '"builtin" or an http(s):// URL'),
    "api_key_env": Key((str,), None, lambda v: v.replace("_", "").isalnum(),
                       "(the NAME of an environment variable, not the key itself)"),
    "weight": Key((int,), None, lambda v: v > 0, "> 0 (relative share of traffic)"),
    "rpm": Key((int,), None, lambda v: v > 0, "> 0 requests per minute"),
}

LEDGER_KEYS: dict[str, Key] = {
    # relative to the working directory of `tierwise serve`; "" turns the ledger off
    "path": Key((str,), "tierwise-ledger.db", None, '(a file path, or "" for no ledger)'),
    "retention_days": Key(NUMBER, 30.0, _positive, "> 0 days"),
    "store_prompts": Key((bool,), False),
}


@dataclass(frozen=True)
class Deployment:
    """One deployment of a tier's model (a provider endpoint); unset fields come from the tier."""

    model: str
    name: str = ""
    zone: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    weight: int | None = None
    rpm: int | None = None


@dataclass(frozen=True)
class Tier:
    """One model tier, cheapest first in a policy. Prices are USD per 1M tokens."""

    name: str
    model: str
    ability: float
    input_per_mtok: float
    output_per_mtok: float
    context_window: int | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    supports_tools: bool = True
    supports_vision: bool = True
    zone: str | None = None
    energy_model: str | None = None
    timeout_s: float | None = None
    deployments: tuple[Deployment, ...] = ()
    retries: int = 1
    cooldown_s: float = 30.0
    transport: str = "auto"

    @property
    def blended_per_mtok(self) -> float:
        """One price to order tiers by: input and output per 1M tokens, added."""
        return self.input_per_mtok + self.output_per_mtok


@dataclass(frozen=True)
class LedgerSettings:
    path: str = "tierwise-ledger.db"
    retention_days: float = 30.0
    store_prompts: bool = False


@dataclass(frozen=True)
class Policy:
    """A routing policy: tiers cheapest first and the rules that pick one for a request."""

    tiers: tuple[Tier, ...]
    name: str = "policy"
    alias: str = "auto"
    quality_target: float = 0.8
    min_confidence: float = 0.6
    decision_noise: float = 0.5
    scorer: str = "fast"
    max_escalations: int = 2
    coalesce: bool = True
    coalesce_across_keys: bool = False
    timeout_s: float = 60.0
    max_call_s: float = 600.0
    client_timeout_s: float = 30.0
    max_connections: int = 1000
    shutdown_grace_s: float = 30.0
    state: str = "memory"
    zone: str | None = None
    carbon_aware: bool = False
    zone_intensity: dict[str, float] = field(default_factory=dict)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    response_checks: tuple[str, ...] = RESPONSE_CHECKS
    source: str | None = None
    # Problems that do not stop the policy from loading (e.g. abilities that do not rise with
    # price); the Router logs each once, `tierwise serve` prints them at start.
    warnings: tuple[str, ...] = ()

    def tier(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def missing_keys(self, environ: Mapping[str, str]) -> dict[str, list[str]]:
        """Per tier, the provider-key variables it names (its `api_key_env` and its
        deployments') that are unset or empty in `environ`; tiers with none missing left out."""
        missing: dict[str, list[str]] = {}
        for tier in self.tiers:
            names = [tier.api_key_env, *(d.api_key_env for d in tier.deployments)]
            unset = [n for n in dict.fromkeys(names) if n and not environ.get(n)]
            if unset:
                missing[tier.name] = unset
        return missing

    def tier_for_model(self, model: str) -> Tier | None:
        """The tier a request pins by naming a tier or a tier's model."""
        return self.tier(model) or next((t for t in self.tiers if t.model == model), None)

    @property
    def largest(self) -> Tier:
        return self.tiers[-1]
