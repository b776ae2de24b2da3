"""The efficiency digest: ``tierwise report`` -> report.html (inline SVG charts) + summary.md.

The panels (tier mix over time, cost vs the always-largest baseline, cumulative savings, CO2e per
1K tokens, latency p50/p99, escalation/coalescing/cache rates) are built here once, as inline
SVG strings (drawn by :mod:`router.accounting.charts`), and reused by the live ``/dashboard``
(:mod:`router.accounting.dashboard`), which fetches the same panels as JSON. Pages make no network
request of their own (a CSP meta tag enforces it).
"""

from __future__ import annotations

import argparse
import html
import itertools
import math
import re
import sqlite3
import sys
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.accounting.charts import COLORS, Series, bar_chart, fmt, line_chart
from router.accounting.queries import empty_bucket
from router.accounting.records import RequestRecord, percentile, summarize


def bucket_grid(t0: float | None, t1: float | None, target: int = 36) -> tuple[float, float, int]:
    """(start, width, count) of round-width time buckets covering [t0, t1]."""
    if t0 is None or t1 is None:
        return 0.0, 60.0, 0
    widths = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400]
    w = float(next((x for x in widths if (t1 - t0) / x <= target), widths[-1]))
    start = math.floor(t0 / w) * w
    return start, w, int((t1 - start) // w) + 1


def bucket_records(
    records: Sequence[RequestRecord], start: float, width: float, count: int
) -> list[dict[str, Any]]:
    """Per-bucket totals of records (the same numbers ``Ledger.buckets`` gets in SQL)."""
    out = [empty_bucket(start + i * width) for i in range(count)]
    lat: dict[int, list[float]] = {}
    for r in records:
        b = out[i := min(max(int((r.ts - start) // width), 0), count - 1)]
        paid = not (r.coalesced or r.cache_hit)
        t = b["tiers"].setdefault(r.tier, [0, 0.0, 0.0])
        t[0] += 1
        t[1] += r.cost_usd if paid else 0.0
        t[2] += r.prompt_tokens + r.completion_tokens if paid else 0
        b["n"] += 1
        b["cost"] += r.cost_usd
        b["baseline"] += r.baseline_cost_usd
        b["saved"] += r.saved_usd
        if r.co2e_g is not None:
            b["co2e"] += r.co2e_g
            b["co2e_tokens"] += r.prompt_tokens + r.completion_tokens
        b["escalated"] += r.escalated
        b["coalesced"] += r.coalesced
        b["cache_hit"] += r.cache_hit
        lat.setdefault(i, []).append(r.latency_ms)
    for i, vals in lat.items():
        out[i]["lat_p50"], out[i]["lat_p99"] = percentile(vals, 0.5), percentile(vals, 0.99)
    return out


def panels(buckets: Sequence[dict[str, Any]], width: float) -> dict[str, dict[str, str]]:
    """The six panels as {id: {"title", "svg"}} from per-bucket totals."""
    xs = [b["ts"] for b in buckets]
    totals: dict[str, list[float]] = {}
    for b in buckets:
        for tier, (_, cost, toks) in b["tiers"].items():
            acc = totals.setdefault(tier, [0.0, 0.0])
            acc[0] += cost
            acc[1] += toks
    # cheapest tier first (bottom of the stack): mean paid cost per token, as in _tier_order
    tiers = sorted(
        totals, key=lambda t: (totals[t][0] / totals[t][1] if totals[t][1] else math.inf, t)
    )

    def per(fn: Any) -> list[float | None]:
        return [fn(b) if b["n"] else None for b in buckets]

    mix: list[Series] = [
        (t, COLORS[i % len(COLORS)], [float(b["tiers"].get(t, [0])[0]) for b in buckets])
        for i, t in enumerate(tiers)
    ]
    cum = list(itertools.accumulate(b["saved"] for b in buckets))
    co2 = per(lambda b: 1000 * b["co2e"] / b["co2e_tokens"] if b["co2e_tokens"] else None)

    def rate(key: str) -> list[float | None]:
        return per(lambda b: 100 * b[key] / b["n"])

    per_bucket = f"per {_dur(width)}"
    cost = [
        ("baseline", COLORS[2], per(lambda b: b["baseline"])),
        ("actual", COLORS[0], per(lambda b: b["cost"])),
    ]
    lat = [
        ("p50", COLORS[0], per(lambda b: b["lat_p50"])),
        ("p99", COLORS[2], per(lambda b: b["lat_p99"])),
    ]
    rates = [
        ("escalated", COLORS[2], rate("escalated")),
        ("coalesced", COLORS[3], rate("coalesced")),
        ("cache hit", COLORS[1], rate("cache_hit")),
    ]
    spec = [
        ("tier_mix", f"Tier mix (requests {per_bucket})", bar_chart(xs, mix)),
        ("cost", f"Cost vs always-largest baseline ({per_bucket})", line_chart(xs, cost, "$")),
        ("savings", "Cumulative savings", line_chart(xs, [("saved", COLORS[0], cum)], "$")),
        ("co2e", "CO2e per 1K tokens", line_chart(xs, [("g / 1K tokens", COLORS[4], co2)], "g")),
        ("latency", "Latency p50 / p99", line_chart(xs, lat, "ms")),
        ("rates", "Escalation, coalescing and cache-hit rates", line_chart(xs, rates, "%")),
    ]
    return {k: {"title": t, "svg": svg} for k, t, svg in spec}


def _tier_order(records: Sequence[RequestRecord]) -> list[str]:
    acc: dict[str, list[float]] = {}
    for r in records:
        a = acc.setdefault(r.tier, [0.0, 0.0])
        if not (r.coalesced or r.cache_hit):
            a[0] += r.cost_usd
            a[1] += r.prompt_tokens + r.completion_tokens
    return sorted(acc, key=lambda t: (acc[t][0] / acc[t][1] if acc[t][1] else math.inf, t))


def record_panels(records: Sequence[RequestRecord]) -> dict[str, dict[str, str]]:
    """``panels`` for a list of records (any order)."""
    ts = [r.ts for r in records]
    start, width, count = bucket_grid(min(ts, default=None), max(ts, default=None))
    return panels(bucket_records(records, start, width, count), width)


def _dur(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)} {unit}"
    return f"{seconds:g} s"


def kpis(s: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """KPI tiles {id: (label, text)} from a summary (``summarize`` or ``Ledger.summary``)."""
    return {
        "requests": ("Requests", f"{s['requests']:,}"),
        "cost": ("Cost", fmt(s["cost_usd"], "$")),
        "baseline": ("Always-largest baseline", fmt(s["baseline_cost_usd"], "$")),
        "saved": ("Saved", f"{fmt(s['saved_usd'], '$')} ({fmt(s['saved_pct'], '%')})"),
        "co2e": ("CO2e", fmt(s["co2e_g"], "g")),
        "co2e_per_1k": ("CO2e per 1K tokens", fmt(s["co2e_g_per_1k_tokens"], "g")),
        "energy": ("Energy", fmt(s["energy_kwh"] * 1000, "Wh")),
        "latency": (
            "Latency p50 / p99",
            f"{fmt(s['latency_ms_p50'], 'ms')} / {fmt(s['latency_ms_p99'], 'ms')}",
        ),
        "tokens_per_s": ("Output tokens/s", fmt(s["tokens_per_s"])),
        "escalation": ("Escalated", fmt(100 * s["escalation_rate"], "%")),
        "coalesced": ("Coalesced", fmt(100 * s["coalesced_rate"], "%")),
        "cache": ("Cache hits", fmt(100 * s["cache_hit_rate"], "%")),
    }


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{padding:14px 22px;background:#264653;color:#fff}header h1{margin:0;font-size:20px}
header p{margin:2px 0 0;opacity:.8;font-size:12px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;
padding:14px 22px}
.kpi{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px #0002}
.kpi b{display:block;font-size:12px;font-weight:500;color:#5a6472}.kpi span{font-size:19px}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px;
padding:0 22px 22px}.panel{background:#fff;border-radius:8px;padding:10px 12px;
box-shadow:0 1px 2px #0002}.panel h2{font-size:14px;margin:0 0 4px}
.chart .grid{stroke:#e3e6ea}.chart text{font-size:10px;fill:#5a6472}.chart .yl{text-anchor:end}
.chart .xl{text-anchor:middle}.chart .lg{font-size:11px;fill:#1d2430}
.chart .ln{fill:none;stroke-width:2}#status.err{color:#ffb4a2}
"""


def page_html(
    title: str,
    subtitle: str,
    tiles: dict[str, tuple[str, str]],
    charts: dict[str, dict[str, str]],
    *,
    script: str = "",
    connect: str = "'none'",
) -> str:
    """One self-contained page (report or dashboard); CSP forbids any non-inline resource."""
    csp = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        f"img-src data:; connect-src {connect}"
    )
    k = "".join(
        f'<div class="kpi"><b>{html.escape(label)}</b><span data-kpi="{i}">'
        f"{html.escape(text)}</span></div>"
        for i, (label, text) in tiles.items()
    )
    p = "".join(
        f'<section class="panel"><h2>{html.escape(c["title"])}</h2>'
        f'<div id="panel-{i}">{c["svg"]}</div></section>'
        for i, c in charts.items()
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{html.escape(title)}</h1><p id="status">{html.escape(subtitle)}</p>'
        f'</header><div class="kpis">{k}</div><div class="panels">{p}</div>'
        f"{script}</body></html>"
    )


def _window(s: dict[str, Any]) -> str:
    if not s["requests"]:
        return "no requests in this window"
    f = "%Y-%m-%d %H:%M UTC"
    t0, t1 = (datetime.fromtimestamp(s[k], UTC).strftime(f) for k in ("first_ts", "last_ts"))
    return f"{t0} to {t1}"


def summary_md(records: Sequence[RequestRecord], title: str) -> str:
    """The short markdown digest."""
    s = summarize(records)
    lines = [
        f"# {title}",
        "",
        f"{s['requests']:,} requests, {_window(s)}.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {text} |" for label, text in kpis(s).values()]
    lines += ["", "| tier | requests | share | cost | saved |", "| --- | --- | --- | --- | --- |"]
    for t in _tier_order(records):
        rs = [r for r in records if r.tier == t]
        lines.append(
            f"| {t} | {len(rs):,} | {fmt(100 * len(rs) / len(records), '%')} | "
            f"{fmt(sum(r.cost_usd for r in rs), '$')} | "
            f"{fmt(sum(r.saved_usd for r in rs), '$')} |"
        )
    if s["escalations_by_reason"]:
        esc = ", ".join(f"{k} {v:,}" for k, v in s["escalations_by_reason"].items())
        lines += ["", f"Escalation steps by reason: {esc}."]
    lines += [
        "",
        "Baseline: the largest tier's prices for the same tokens. Energy and CO2e: "
        "ecologits estimates (midpoints), for the models it knows.",
        "",
    ]
    return "\n".join(lines)


def render_report(
    records: list[RequestRecord], out_dir: Path, title: str = "tierwise efficiency report"
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``summary.md`` into ``out_dir``."""
    records = sorted(records, key=lambda r: r.ts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = summarize(records)
    page = page_html(
        title, f"{s['requests']:,} requests, {_window(s)}", kpis(s), record_panels(records)
    )
    html_path, md_path = out_dir / "report.html", out_dir / "summary.md"
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text(summary_md(records, title), encoding="utf-8")
    return html_path, md_path


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"2w"`` (ago) or an ISO date/time (UTC if naive)."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*", text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"invalid --since {text!r}: use a duration like 30m, 12h, 7d, 2w "
            "or an ISO date like 2026-11-01"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``tierwise report``."""
    parser.add_argument(
        "--ledger",
        default=None,
        help="ledger SQLite file (default: the policy's, else tierwise-ledger.db)",
    )
    parser.add_argument("--policy", default=None, help="policy TOML whose [ledger] path to use")
    parser.add_argument("--since", default="7d", help="window: 30m, 12h, 7d, 2w or an ISO date")
    parser.add_argument("--out", default="tierwise-report", help="output directory")
    parser.add_argument("--title", default="tierwise efficiency report")


def _policy_ledger_path(policy: Path) -> str:
    """The ``[ledger] path`` of a policy file (only that key is read; the proxy validates)."""
    try:
        with policy.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"policy not found: {policy}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{policy}: invalid TOML ({e})") from None
    path = (data.get("ledger") or {}).get("path", "tierwise-ledger.db")
    if not isinstance(path, str):
        raise ValueError(f"{policy}: [ledger] path must be a file path string")
    if not path.strip():
        raise ValueError(f'{policy}: [ledger] path = "" (no ledger is written); '
                         "pass --ledger PATH")
    return path


def run_report(args: argparse.Namespace) -> int:
    """``tierwise report``: 0 on success, 2 with a message on stderr for bad input."""
    from router.accounting.ledger import Ledger

    try:
        since = parse_since(args.since)
    except ValueError as e:
        print(f"tierwise report: {e}", file=sys.stderr)
        return 2
    ledger_path = getattr(args, "ledger", None)
    if ledger_path is None and getattr(args, "policy", None):
        try:
            ledger_path = _policy_ledger_path(Path(args.policy))
        except (OSError, ValueError) as e:
            print(f"tierwise report: {e}", file=sys.stderr)
            return 2
    path = Path(ledger_path or "tierwise-ledger.db")
    if not path.is_file():
        print(
            f"tierwise report: ledger not found: {path} (pass --ledger PATH, the ledger file "
            "set in the policy)",
            file=sys.stderr,
        )
        return 2
    try:
        ledger = Ledger(path, retention_days=None)
        try:
            records = ledger.query(since)
        finally:
            ledger.close()
    except sqlite3.DatabaseError as e:
        print(f"tierwise report: {path} is not a tierwise ledger ({e})", file=sys.stderr)
        return 2
    html_path, md_path = render_report(records, Path(args.out), args.title)
    print(f"{len(records)} requests -> {html_path} and {md_path}")
    return 0
