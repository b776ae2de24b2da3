"""Policy settings for who may call the proxy and how much: [auth], [limits] and [cache].

Plain frozen dataclasses (the keys and their checks are in policies/access_keys.py). A policy
without these sections runs open, without budgets or rate limits, and uncached, as the embedded
demo does; the input limits (max_body_bytes, max_messages, max_content_chars) keep the defaults
of LimitSettings below even then.

```toml
[auth]
keys_env = "TIERWISE_API_KEYS"      # optional: "id:key,id2:key2" (or bare keys) in this env var

[[auth.keys]]
id = "team-a"                       # what the ledger and logs show; never the key itself
sha256 = "9f86d0..."                # sha256 hex of the key: `tierwise hash-key` or sha256sum
admin = true                        # optional: this key may read /dashboard (all keys' data)
usd_per_day = 5.0                   # optional per-key overrides of [limits]

[limits]
requests_per_minute = 600           # per key (one shared "anonymous" bucket without [auth])
tokens_per_minute = 200000
usd_per_day = 20.0
usd_per_month = 400.0
downgrade_at = 0.2                  # under 20% of a budget left: pin the cheapest tier, not 429
max_body_bytes = 4194304
max_messages = 1000
max_content_chars = 1000000
max_tokens = 16384                  # a larger max_tokens in a request is a 400

[cache]
enabled = true
ttl_s = 300
scope = "key"                       # "key": per API key; "global": shared by every caller
```
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiKey:
    """One client key as stored in a policy: an id and the sha256 hex of the secret."""

    id: str
    sha256: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    usd_per_day: float | None = None
    usd_per_month: float | None = None
    admin: bool = False  # may read /dashboard, which shows every key's traffic and cost


@dataclass(frozen=True)
class AuthSettings:
    keys: tuple[ApiKey, ...] = ()
    keys_env: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.keys) or self.keys_env is not None


@dataclass(frozen=True)
class LimitSettings:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    usd_per_day: float | None = None
    usd_per_month: float | None = None
    downgrade_at: float | None = None
    downgrade_tier: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 1000
    max_content_chars: int = 1_000_000
    max_tokens: int | None = None


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = False
    ttl_s: float = 300.0
    scope: str = "key"
    max_entries: int = 10_000
    max_entry_bytes: int = 1024 * 1024
