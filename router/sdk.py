"""The module-level SDK: `route`, `complete`, `acomplete` on a cached Router per policy."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from policies import Decision, Policy
from router.engine import Router

_routers: dict[str, Router] = {}
_lock = threading.Lock()


def get_router(policy: Policy | str | Path | None = None) -> Router:
    """A Router for `policy` (None: the embedded demo), built once per policy file."""
    if isinstance(policy, Policy):
        return Router(policy)
    key = str(Path(policy).resolve()) if policy is not None else ""
    with _lock:
        if key not in _routers:
            _routers[key] = Router(policy)
        return _routers[key]


def route(prompt_or_messages: str | Sequence[dict[str, Any]],
          policy: Policy | str | Path | None = None, **fields: Any) -> Decision:
    """Decide which tier should answer; makes no network call."""
    return get_router(policy).route(prompt_or_messages, **fields)


def complete(prompt_or_messages: str | Sequence[dict[str, Any]],
             policy: Policy | str | Path | None = None, **fields: Any) -> Any:
    """Route, then call the chosen tier through litellm; the response has `.tierwise`.

    The first call in a process imports litellm, which takes ~3 s (and ~200 MB); later calls
    do not pay it again, and `route()` never does."""
    return get_router(policy).complete(prompt_or_messages, **fields)


async def acomplete(prompt_or_messages: str | Sequence[dict[str, Any]],
                    policy: Policy | str | Path | None = None, **fields: Any) -> Any:
    """Async twin of `complete`."""
    return await get_router(policy).acomplete(prompt_or_messages, **fields)
