"""``/dashboard``: the report's panels, live, on one page with no external network requests.

The page is the report page (:func:`router.accounting.report.page_html`) plus a small inline script
that polls ``/dashboard/data`` (same origin; the CSP allows ``connect-src 'self'`` only) every few
seconds and swaps in the KPI texts and the panels' SVG, which the server renders with the same
chart code as ``tierwise report``. The proxy mounts :func:`dashboard_routes`.

Each poll aggregates the last ``window_s`` seconds of the ledger (default 24 h) in SQL, in a
worker thread: about 0.3 s per 100k requests in the window on these machines.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from router.accounting.ledger import Ledger
from router.accounting.metrics import Metrics
from router.accounting.records import summarize
from router.accounting.report import bucket_grid, kpis, page_html, panels

_SCRIPT = """<script>
(() => {
  const url = %(url)s, every = %(ms)d, status = document.getElementById("status");
  async function tick() {
    try {
      const r = await fetch(url, {cache: "no-store", credentials: "same-origin"});
      if (!r.ok) throw new Error("HTTP " + r.status);
      const d = await r.json();
      for (const [k, v] of Object.entries(d.kpis)) {
        const el = document.querySelector('[data-kpi="' + k + '"]');
        if (el) el.textContent = v[1];
      }
      for (const [k, p] of Object.entries(d.panels)) {
        const el = document.getElementById("panel-" + k);
        if (el) el.innerHTML = p.svg;
      }
      status.textContent = d.subtitle + " · updated " + d.generated_at;
      status.className = "ok";
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    } catch (e) {
      status.textContent = "stale: " + e.message;
      status.className = "err";
    }
  }
  tick();
  setInterval(tick, every);
})();
</script>"""


def _fallbacks(metrics: Metrics | None) -> float | None:
    if metrics is None:
        return None
    return sum(
        s.value
        for fam in metrics.registry.collect()
        if fam.name == "tierwise_redis_fallback"
        for s in fam.samples
        if s.name == "tierwise_redis_fallback_total"
    )


def dashboard_data(
    ledger: Ledger,
    metrics: Metrics | None = None,
    window_s: float = 24 * 3600,
    now: float | None = None,
) -> dict[str, Any]:
    """JSON for the live page: ``{"subtitle", "generated_at", "summary", "kpis", "panels"}``.

    ``summary`` is the ledger's summary of the window; ``kpis`` maps tile id to (label, text);
    ``panels`` maps panel id to {"title", "svg"}. With ``metrics``, a Redis-fallbacks tile is
    added from this process's counter.
    """
    now = time.time() if now is None else now
    since = now - window_s
    s = ledger.summary(since)
    start, width, count = bucket_grid(s["first_ts"], s["last_ts"])
    charts = panels(ledger.buckets(since, start, width, count), width)
    tiles = kpis(s)
    fb = _fallbacks(metrics)
    if fb is not None:
        tiles["redis_fallbacks"] = ("Redis fallbacks (this worker)", f"{fb:,.0f}")
    hours = window_s / 3600
    return {
        "subtitle": f"{s['requests']:,} requests in the last {hours:g} h",
        "generated_at": datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC"),
        "summary": s,
        "kpis": tiles,
        "panels": charts,
    }


def dashboard_html(
    data: dict[str, Any] | None = None,
    *,
    data_url: str = "/dashboard/data",
    refresh_s: float = 5.0,
    title: str = "tierwise dashboard",
) -> str:
    """The live page. ``data`` (from :func:`dashboard_data`) fills the first paint; without it
    the page starts with empty panels and fills on the first poll. ``data_url`` must be a
    same-origin path.
    """
    if not data_url.startswith("/") or data_url.startswith("//"):
        raise ValueError(f"data_url must be a same-origin path like /dashboard/data: {data_url!r}")
    tiles = data["kpis"] if data else kpis(summarize([]))
    charts = data["panels"] if data else panels([], 60.0)
    subtitle = data["subtitle"] if data else "loading…"
    script = _SCRIPT % {"url": json.dumps(data_url), "ms": int(refresh_s * 1000)}
    return page_html(title, subtitle, tiles, charts, script=script, connect="'self'")


def dashboard_routes(
    ledger: Ledger,
    metrics: Metrics | None = None,
    *,
    path: str = "/dashboard",
    window_s: float = 24 * 3600,
    refresh_s: float = 5.0,
) -> list[Any]:
    """Starlette routes ``GET {path}`` (page) and ``GET {path}/data`` (JSON)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    headers = {"cache-control": "no-store"}
    cache: dict[str, Any] = {"at": -math.inf, "data": None}
    lock = asyncio.Lock()

    async def current() -> dict[str, Any]:
        # one SQL pass per refresh interval however many pages poll
        async with lock:
            if time.monotonic() - cache["at"] >= refresh_s / 2:
                cache["data"] = await run_in_threadpool(dashboard_data, ledger, metrics, window_s)
                cache["at"] = time.monotonic()
            return cache["data"]

    async def page(request: Request) -> HTMLResponse:
        html = dashboard_html(await current(), data_url=f"{path}/data", refresh_s=refresh_s)
        return HTMLResponse(html, headers=headers)

    async def data(request: Request) -> JSONResponse:
        return JSONResponse(await current(), headers=headers)

    return [Route(path, page, methods=["GET"]), Route(f"{path}/data", data, methods=["GET"])]
