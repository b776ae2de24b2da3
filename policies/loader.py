"""Load a policy TOML file, check every key, and fill prices, windows and abilities.

Missing prices and context windows come from litellm's model map, missing abilities from the
shipped ability table. Any problem raises one PolicyError naming the file, line, key and fix.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from policies.access_keys import access_settings
from policies.errors import PolicyError
from policies.locate import locate
from policies.schema import (
    DEPLOYMENT_KEYS,
    LEDGER_KEYS,
    REQUIRED,
    ROUTER_KEYS,
    TIER_KEYS,
    Deployment,
    Key,
    LedgerSettings,
    Policy,
    Tier,
)

DEMO_POLICY = "demo.toml"
TIERS_FIX = ('write each tier as its own [[tiers]] table (double brackets), cheapest first, '
             'e.g. [[tiers]] then name = "mini" and model = "gpt-4o-mini" on the lines below '
             "(see policies/demo.toml)")


def shipped_policy_path(name: str = DEMO_POLICY) -> Path:
    """Path of a policy shipped inside the package (``demo.toml`` is the embedded default).

    Next to this module (package data, see pyproject.toml), not through importlib.resources,
    whose import costs ~10 ms of `tierwise route`'s start-up."""
    return Path(__file__).resolve().parent / name


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file; None loads the embedded demo policy."""
    file = Path(path) if path is not None else shipped_policy_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("file not found", file=file,
                          fix="pass an existing policy TOML file (see policies/demo.toml)",
                          ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read the file ({exc})", file=file) from None
    return parse_policy(text, source=str(file))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy TOML text; `source` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        raise PolicyError(f"not valid TOML ({exc})", file=source, line=line,
                          fix="check quotes, brackets and '=' on that line") from None
    return _Checker(text, source).policy(raw)


class _Checker:
    """Walks the parsed TOML, raising PolicyError with the location of the first problem."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, path: tuple[str | int, ...], problem: str,
             fix: str | None = None) -> PolicyError:
        key = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p)
                      for i, p in enumerate(path)) or None
        line = None
        for end in range(len(path), -1, -1):  # nested inline tables: fall back to the parent's line
            line = locate(self.text, path[:end])
            if line is not None:
                break
        return PolicyError(problem, file=self.source, key=key, line=line, fix=fix)

    def section(self, raw: dict[str, Any], spec: dict[str, Key],
                path: tuple[str | int, ...]) -> dict[str, Any]:
        for name in raw:
            if name not in spec:
                raise self.fail((*path, name), "unknown key",
                                fix=f"remove it or use one of: {', '.join(sorted(spec))}")
        values: dict[str, Any] = {}
        for name, key in spec.items():
            if name not in raw:
                if key.default is REQUIRED:
                    raise self.fail(path, f"missing required key '{name}'",
                                    fix=f"add {name} = <{key.describe()}>")
                values[name] = key.default
                continue
            value = raw[name]
            ok_type = isinstance(value, key.types) and not (
                isinstance(value, bool) and bool not in key.types)
            if not ok_type or (key.check is not None and not key.check(value)):
                raise self.fail((*path, name), f"invalid value {value!r}",
                                fix=f"use {key.describe()}")
            values[name] = float(value) if float in key.types and isinstance(value, int) else value
        return values

    def policy(self, raw: dict[str, Any]) -> Policy:
        self.tiers_shape(raw)
        top = self.section(raw, ROUTER_KEYS, ())
        raw_tiers = top.pop("tiers")
        if not raw_tiers or not all(isinstance(t, dict) for t in raw_tiers):
            raise self.fail(("tiers",), "needs at least one [[tiers]] table", fix=TIERS_FIX)
        tiers = tuple(self.tier(t, i, top["zone"]) for i, t in enumerate(raw_tiers))
        self.check_tiers(tiers)
        top.update(access_settings(self, top, {t.name for t in tiers}))
        ledger_raw = top.pop("ledger") or {}
        ledger = LedgerSettings(**self.section(ledger_raw, LEDGER_KEYS, ("ledger",)))
        top["response_checks"] = tuple(dict.fromkeys(top["response_checks"]))
        top["zone_intensity"] = {k: float(v) for k, v in (top["zone_intensity"] or {}).items()}
        return Policy(tiers=tiers, ledger=ledger, source=self.source,
                      warnings=self.warnings(tiers), **top)

    def tiers_shape(self, raw: dict[str, Any]) -> None:
        """The usual ways to get the tiers' shape wrong, said in TOML's terms ([[tiers]])."""
        if "tiers" in raw and isinstance(raw["tiers"], dict):
            only = "deployments" in raw["tiers"] and len(raw["tiers"]) == 1
            problem = ("[[tiers.deployments]] without a [[tiers]] table before it" if only else
                       "a single [tiers] table, but tiers must be an array of [[tiers]] tables "
                       "(double brackets)")
            raise self.fail(("tiers",), problem, fix=TIERS_FIX)
        if "tiers" in raw and not isinstance(raw["tiers"], list):
            raise self.fail(("tiers",), f"invalid value {raw['tiers']!r}", fix=TIERS_FIX)
        if "tiers" not in raw and all(name in ROUTER_KEYS for name in raw):
            raise self.fail((), "missing required key 'tiers' (no [[tiers]] table)",
                            fix=TIERS_FIX)

    def tier(self, raw: dict[str, Any], index: int, zone: str | None = None) -> Tier:
        path: tuple[str | int, ...] = ("tiers", index)
        v = self.section(raw, TIER_KEYS, path)
        v["zone"] = v["zone"] or zone
        # litellm's model map is a 5,000-entry JSON file: read it only if the tier leaves a gap.
        needs_map = any(v[k] is None for k in ("input_per_mtok", "context_window",
                                               "supports_tools", "supports_vision"))
        info = None
        if needs_map:
            from policies import model_info  # only then: most shipped policies set everything

            info = model_info.lookup(v["model"])
        if (v["input_per_mtok"] is None) != (v["output_per_mtok"] is None):
            raise self.fail(path, "sets only one of input_per_mtok / output_per_mtok",
                            fix="set both, or neither to use litellm's prices")
        if v["input_per_mtok"] is None:
            if info is None or info.input_cost_per_token is None:
                raise self.fail((*path, "model"), f"no known price for model {v['model']!r}",
                                fix="set input_per_mtok and output_per_mtok on this tier")
            v["input_per_mtok"] = info.input_cost_per_token * 1e6
            v["output_per_mtok"] = (info.output_cost_per_token or 0.0) * 1e6
        if v["context_window"] is None and info is not None:
            v["context_window"] = info.max_input_tokens
        for flag, known in (("supports_tools", info and info.supports_function_calling),
                            ("supports_vision", info and info.supports_vision)):
            if v[flag] is None:
                v[flag] = True if info is None or known is None else bool(known)
        if v["ability"] is None:
            from classifiers import ability_for

            ability = ability_for(v["model"])
            if ability is None:
                raise self.fail((*path, "model"), f"no known ability for model {v['model']!r}",
                                fix="set ability = <number> on this tier, or fit one with "
                                    "`tierwise calibrate`")
            v["ability"] = ability
        v["deployments"] = self.deployments(v, path)
        return Tier(**v)

    def deployments(self, tier: dict[str, Any], path: tuple[str | int, ...]
                    ) -> tuple[Deployment, ...]:
        """The tier's deployments; each inherits the tier's model, api_base and api_key_env."""
        raw = tier["deployments"]
        if raw is None:
            return ()
        out: list[Deployment] = []
        for i, item in enumerate(raw):
            where = (*path, "deployments", i)
            if not isinstance(item, dict):
                raise self.fail(where, "must be a table",
                                fix='write deployments = [{ api_base = "https://..." }, ...]')
            v = self.section(item, DEPLOYMENT_KEYS, where)
            v["model"] = v["model"] or tier["model"]
            v["api_base"] = v["api_base"] or tier["api_base"]
            v["api_key_env"] = v["api_key_env"] or tier["api_key_env"]
            v["zone"] = v["zone"] or tier["zone"]
            v["name"] = v["name"] or f"{tier['name']}-{i}"
            if any(d.name == v["name"] for d in out):
                raise self.fail((*where, "name"), f"duplicate deployment name {v['name']!r}",
                                fix="give each deployment of a tier its own name")
            out.append(Deployment(**v))
        return tuple(out)

    def warnings(self, tiers: tuple[Tier, ...]) -> tuple[str, ...]:
        """Abilities should rise with price: a pricier tier rated no more able than a cheaper
        one is never chosen on merit, and escalating "one tier up" to it asks a tier the policy
        itself rates less able. Allowed (a hand-set ability may be a guess), but said."""
        pairs = []
        for i, tier in enumerate(tiers):
            cheaper = max(tiers[:i], key=lambda t: t.ability, default=None)
            if cheaper is not None and tier.ability <= cheaper.ability:
                pairs.append(f"{tier.name!r} (ability {tier.ability:g}) is no more able than "
                             f"the cheaper {cheaper.name!r} (ability {cheaper.ability:g})")
        if not pairs:
            return ()
        return (f"{self.source}: tier abilities do not increase with price: "
                f"{'; '.join(pairs)}. Escalation \"one tier up\" may go to a less able tier. "
                "Fix: set ability = <number> on the tiers so that each is above the cheaper "
                "ones (`tierwise calibrate` fits one from labeled prompts)",)

    def check_tiers(self, tiers: tuple[Tier, ...]) -> None:
        seen: dict[str, int] = {}
        for i, tier in enumerate(tiers):
            if tier.name in seen:
                raise self.fail(("tiers", i, "name"), f"duplicate tier name {tier.name!r}",
                                fix="tier names must be unique "
                                    f"(also used by tiers[{seen[tier.name]}])")
            seen[tier.name] = i
        for i in range(1, len(tiers)):
            cheaper, tier = tiers[i - 1], tiers[i]
            if tier.blended_per_mtok < cheaper.blended_per_mtok:
                raise self.fail(
                    ("tiers", i, "model"),
                    f"tiers must be ordered cheapest first, but {tier.name!r} "
                    f"(${tier.blended_per_mtok:g}/1M in+out) is cheaper than {cheaper.name!r} "
                    f"(${cheaper.blended_per_mtok:g}/1M) before it",
                    fix="reorder the [[tiers]] tables cheapest first")
