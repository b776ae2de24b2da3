"""Client API keys for the proxy: who is calling, checked in constant time.

Keys come from the policy's ``[[auth.keys]]`` (only their sha256 is stored) and/or from the
environment variable named by ``[auth] keys_env`` (``"id:key,id2:key2"``; a bare ``key`` gets
the id ``env-<first 8 hex of its sha256>``). A request presents its key as
``Authorization: Bearer <key>`` (what the OpenAI SDKs send) or ``x-api-key: <key>``.

The presented key is hashed and compared with every stored hash through
``hmac.compare_digest``, without stopping at the first match, so timing reveals neither
whether nor where a key matched. Only the key's id leaves this module (ledger, logs, limits);
the key itself is never logged, echoed in an error or put in a header.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from policies.access import ApiKey, AuthSettings
from router.errors import TierwiseError

log = logging.getLogger("tierwise.auth")

ANONYMOUS = "anonymous"


class AuthenticationError(TierwiseError):
    """401: no key, or a key tierwise does not know (OpenAI's shape and code)."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


@dataclass(frozen=True)
class Client:
    """An authenticated caller: its key id and the per-key limit overrides, if any."""

    id: str
    key: ApiKey | None = None


_ANONYMOUS = Client(ANONYMOUS)  # every caller when auth is off (immutable: shared)


def hash_key(key: str) -> str:
    """The sha256 hex a policy stores for `key` (``[[auth.keys]] sha256 = ...``)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def keys_from_env(value: str) -> list[ApiKey]:
    """Parse ``"id:key,id2:key2"`` (or bare keys) into hashed ApiKeys."""
    out: list[ApiKey] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, secret = item.partition(":")
        if not sep or not secret:  # a bare key: derive a stable, non-secret id
            secret = item
            key_id = "env-" + hash_key(item)[:8]
        out.append(ApiKey(id=key_id.strip(), sha256=hash_key(secret.strip())))
    return out


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, from ``Authorization: Bearer`` or ``x-api-key``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key") or headers.get("api-key")
    return key.strip() if key and key.strip() else None


class Authenticator:
    """Maps a request's headers to a Client, or raises AuthenticationError."""

    def __init__(self, settings: AuthSettings, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        keys = list(settings.keys)
        if settings.keys_env is not None:
            raw = env.get(settings.keys_env, "")
            if not raw:
                # Configured but empty: fail closed (no key will match) and say so once.
                log.warning("auth: environment variable %s is empty; only policy keys apply",
                            settings.keys_env)
            keys.extend(keys_from_env(raw))
        self.enabled = settings.enabled
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]

    def authenticate(self, headers: Mapping[str, str]) -> Client:
        """The caller of a request whose (lower-case) headers are `headers`."""
        if not self.enabled:
            return _ANONYMOUS
        key = presented_key(headers)
        if key is None:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: ApiKey | None = None
        for stored, api_key in self._keys:  # no early exit: constant time over the key list
            if hmac.compare_digest(stored, digest) and found is None:
                found = api_key
        if found is None:
            raise AuthenticationError("Incorrect API key provided.")
        return Client(found.id, found)
