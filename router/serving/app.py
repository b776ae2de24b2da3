"""The whole proxy that `tierwise serve` runs: shared state, the Router, accounting, the
OpenAI-compatible app, and the Guard in front of it, assembled for one policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policies import Policy
from router.serving.guard import Guard
from router.state import open_state


def build_app(policy: Policy, *, scorer: Any = None,
              on_fallback: Callable[[str], None] | None = None, ledger: Any = None,
              metrics: Any = None, **proxy_kwargs: Any) -> Guard:
    """The whole proxy for `policy`: shared state from ``policy.state``, a Router that coalesces
    across replicas when that state is Redis, accounting (router.serving.accountant) into `metrics`
    (a fresh router.accounting.metrics.Metrics by default, served at /metrics) and `ledger` (a
    router.accounting.ledger.Ledger, None: no ledger and no /dashboard), the proxy app, and the
    Guard in front of it. ``app.accountant`` / ``app.metrics`` / ``app.ledger`` are the parts."""
    from router.accounting.dashboard import dashboard_routes
    from router.accounting.metrics import Metrics
    from router.coalescing.shared import SharedCoalescer
    from router.engine import Router
    from router.serving.accountant import Accountant
    from router.serving.proxy import create_app, metrics_route

    metrics = metrics if metrics is not None else Metrics()

    def fallback(operation: str) -> None:
        metrics.observe_redis_fallback(operation)
        if on_fallback is not None:
            on_fallback(operation)

    state = open_state(policy.state, on_fallback=fallback, max_entries=policy.cache.max_entries)
    coalescer = None
    if policy.state != "memory":
        coalescer = SharedCoalescer(state, follow_timeout_s=policy.timeout_s * 2 + 10,
                                    on_fallback=fallback)
    router = Router(policy, scorer=scorer, coalescer=coalescer)
    accountant = Accountant(policy, ledger=ledger, metrics=metrics).attach(router)
    routes = [*proxy_kwargs.pop("extra_routes", ()), metrics_route(metrics, accountant.flush)]
    if ledger is not None:
        routes += dashboard_routes(ledger, metrics)
    app = create_app(policy, router=router, extra_routes=routes, **proxy_kwargs)
    guard = Guard(app, policy, state=state, router=router, accountant=accountant,
                  chat=app.state.chat)
    guard.accountant, guard.metrics, guard.ledger = accountant, metrics, ledger
    return guard
