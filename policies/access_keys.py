"""The keys of the [auth], [limits] and [cache] policy sections and their checks.

Same rules as the rest of the schema (policies/schema.py): an unknown key, a wrong type or an
out-of-range value is a PolicyError naming file, line, key and fix.
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

from policies.access import ApiKey, AuthSettings, CacheSettings, LimitSettings
from policies.errors import PolicyError
from policies.schema import NUMBER, REQUIRED, Key

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _pos(v: float) -> bool:
    return math.isfinite(v) and v > 0


_PER_KEY: dict[str, Key] = {
    "requests_per_minute": Key((int,), None, lambda v: v > 0, "> 0 requests per minute"),
    "tokens_per_minute": Key((int,), None, lambda v: v > 0, "> 0 tokens per minute"),
    "usd_per_day": Key(NUMBER, None, _pos, "> 0 USD per UTC day"),
    "usd_per_month": Key(NUMBER, None, _pos, "> 0 USD per UTC month"),
}

AUTH_KEYS: dict[str, Key] = {
    "keys": Key((list,), ()),
    "keys_env": Key((str,), None, lambda v: bool(v) and v.replace("_", "").isalnum(),
                    '(the NAME of an environment variable holding "id:key,..." pairs)'),
}

API_KEY_KEYS: dict[str, Key] = {
    "id": Key((str,), REQUIRED, lambda v: bool(re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", v)),
              "(1-64 letters, digits, '_', '-', '.')"),
    "sha256": Key((str,), REQUIRED, lambda v: bool(_HEX64.fullmatch(v)),
                  "(64 lowercase hex digits: the sha256 of the key, never the key itself)"),
    # may read /dashboard (every tenant's traffic and cost); other keys get 403 there
    "admin": Key((bool,), False),
    **_PER_KEY,
}

LIMIT_KEYS: dict[str, Key] = {
    **_PER_KEY,
    "downgrade_at": Key(NUMBER, None, lambda v: 0 < v < 1,
                        "between 0 and 1: the share of a budget left below which requests "
                        "go to the cheapest tier instead of being refused"),
    "downgrade_tier": Key((str,), None, lambda v: bool(v.strip()), "(a tier name)"),
    "max_body_bytes": Key((int,), 4 * 1024 * 1024, lambda v: v >= 1024, ">= 1024 bytes"),
    "max_messages": Key((int,), 1000, lambda v: v > 0, "> 0"),
    "max_content_chars": Key((int,), 1_000_000, lambda v: v > 0, "> 0 characters per message"),
    "max_tokens": Key((int,), None, lambda v: v > 0, "> 0 tokens"),
}

CACHE_KEYS: dict[str, Key] = {
    "enabled": Key((bool,), False),
    "ttl_s": Key(NUMBER, 300.0, _pos, "> 0 seconds"),
    "scope": Key((str,), "key", lambda v: v in ("key", "global"), '"key" or "global"'),
    "max_entries": Key((int,), 10_000, lambda v: v > 0, "> 0 (in-memory cache size)"),
    "max_entry_bytes": Key((int,), 1024 * 1024, lambda v: v > 0, "> 0 bytes per response"),
}


class _Checker(Protocol):
    def fail(self, path: tuple[str | int, ...], problem: str,
             fix: str | None = None) -> PolicyError: ...

    def section(self, raw: dict[str, Any], spec: dict[str, Key],
                path: tuple[str | int, ...]) -> dict[str, Any]: ...


def access_settings(checker: _Checker, top: dict[str, Any],
                    tier_names: set[str]) -> dict[str, Any]:
    """Policy fields auth/limits/cache from the raw sections popped out of `top`."""
    raw_auth = top.pop("auth", None) or {}
    auth = checker.section(raw_auth, AUTH_KEYS, ("auth",))
    keys: list[ApiKey] = []
    for i, item in enumerate(auth["keys"]):
        where: tuple[str | int, ...] = ("auth", "keys", i)
        if not isinstance(item, dict):
            raise checker.fail(where, "must be a table",
                               fix='write [[auth.keys]] tables with id = ... and sha256 = ...')
        key = ApiKey(**checker.section(item, API_KEY_KEYS, where))
        if any(k.id == key.id for k in keys):
            raise checker.fail((*where, "id"), f"duplicate key id {key.id!r}",
                               fix="give every [[auth.keys]] its own id")
        keys.append(key)
    limits = LimitSettings(**checker.section(top.pop("limits", None) or {}, LIMIT_KEYS,
                                             ("limits",)))
    if limits.downgrade_tier is not None and limits.downgrade_tier not in tier_names:
        raise checker.fail(("limits", "downgrade_tier"),
                           f"unknown tier {limits.downgrade_tier!r}",
                           fix=f"use one of {sorted(tier_names)}")
    cache = CacheSettings(**checker.section(top.pop("cache", None) or {}, CACHE_KEYS, ("cache",)))
    return {"auth": AuthSettings(keys=tuple(keys), keys_env=auth["keys_env"]),
            "limits": limits, "cache": cache}
