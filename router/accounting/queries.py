"""The decision ledger read back: its columns, and the records, totals and time buckets that
``tierwise report`` and ``/dashboard`` read from it, computed in SQL.

`LedgerQueries` is the reading half of router.accounting.ledger.Ledger (its base class): every
read first flushes this process's queued rows, then opens a connection of its own.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from router.accounting.records import RequestRecord, percentile, summarize

# The requests table's columns: RequestRecord's fields, in order (the ledger writes them so)
_BOOL = {"escalated", "coalesced", "cache_hit", "stream"}
_COLS = [f.name for f in fields(RequestRecord)]
_ESC = _COLS.index("escalations")
_BOOL_IDX = [_COLS.index(c) for c in _BOOL]


class LedgerQueries:
    """Reads of the ledger; mixed into `Ledger`, whose connection settings and flush they use."""

    if TYPE_CHECKING:  # provided by Ledger
        _closed: bool

        def _connect(self) -> sqlite3.Connection: ...

        def flush(self, timeout: float = 30.0) -> bool: ...

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if not self._closed:
            self.flush()  # read this process's own writes
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def query(self, since: float | None = None) -> list[RequestRecord]:
        """Records with ``ts >= since`` (all if None), oldest first."""
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_COLS)} FROM requests WHERE ts >= ? ORDER BY ts, id",
                (_since(since),),
            ).fetchall()
        out = []
        init = [i for i, f in enumerate(fields(RequestRecord)) if f.init]
        for row in rows:
            vals = list(row)
            vals[_ESC] = json.loads(vals[_ESC] or "[]")
            for i in _BOOL_IDX:
                vals[i] = bool(vals[i])
            out.append(RequestRecord(*(vals[i] for i in init)))
        return out

    def count(self) -> int:
        with self._reader() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Totals for the report and dashboard, computed in SQL (same keys and values as
        :func:`router.accounting.records.summarize` of the same records)."""
        a = (_since(since),)
        with self._reader() as conn:
            (
                (
                    n,
                    pt,
                    ct,
                    cost,
                    base,
                    saved,
                    kwh,
                    co2,
                    co2tok,
                    esc,
                    coal,
                    hits,
                    t0,
                    t1,
                    toks,
                    busy,
                ),
            ) = conn.execute(f"SELECT COUNT(*), {_SUMS}, MIN(ts), MAX(ts), {_SERVED} {_W}", a)
            if n == 0:
                return summarize([])
            out: dict[str, Any] = {"requests": n}
            for key, col in (
                ("by_tier", "tier"),
                ("by_outcome", "outcome"),
                ("by_deployment", "deployment"),
            ):
                out[key] = dict(
                    conn.execute(
                        f"SELECT {col}, COUNT(*) {_W} AND {col} IS NOT NULL GROUP BY 1 ORDER BY 1",
                        a,
                    )
                )
            out["escalations_by_reason"] = dict(
                conn.execute(
                    f"SELECT {_REASON}, COUNT(*) FROM requests, json_each(requests.escalations) "
                    "WHERE ts >= ? GROUP BY 1 ORDER BY 1",
                    a,
                )
            )
            cols = list(
                zip(*conn.execute(f"SELECT latency_ms, ttft_ms, decision_ms {_W}", a), strict=True)
            )
        out.update(
            prompt_tokens=int(pt),
            completion_tokens=int(ct),
            cost_usd=cost,
            baseline_cost_usd=base,
            saved_usd=saved,
        )
        out["saved_pct"] = 100 * saved / base if base else 0.0
        out.update(energy_kwh=kwh, co2e_g=co2)
        out["co2e_g_per_1k_tokens"] = co2 / (co2tok / 1000) if co2tok else None
        out["tokens_per_s"] = toks / (busy / 1000) if busy else None
        for name, values in zip(("latency_ms", "ttft_ms", "decision_ms"), cols, strict=True):
            vals = [float(v) for v in values if v is not None]
            out[f"{name}_p50"], out[f"{name}_p99"] = percentile(vals, 0.5), percentile(vals, 0.99)
        out.update(
            escalated=int(esc),
            escalation_rate=esc / n,
            coalesced=int(coal),
            coalesced_rate=coal / n,
            cache_hits=int(hits),
            cache_hit_rate=hits / n,
            first_ts=t0,
            last_ts=t1,
        )
        return out

    def buckets(self, since: float | None, start: float, width: float, count: int) -> list[dict]:
        """Per-time-bucket totals in SQL, as :func:`router.accounting.report.bucket_records`
        computes them from records: bucket ``i`` covers
        ``[start + i * width, start + (i + 1) * width)``."""
        out = [empty_bucket(start + i * width) for i in range(count)]
        b = f"MIN(MAX(CAST((ts - {float(start)!r}) / {float(width)!r} AS INTEGER), 0), {count - 1})"
        a = (_since(since),)
        with self._reader() as conn:
            for i, n, *sums in conn.execute(f"SELECT {b}, COUNT(*), {_SUMS} {_W} GROUP BY 1", a):
                _, _, cost, base, saved, _, co2, co2tok, esc, coal, hits = sums
                out[i].update(
                    n=n,
                    cost=cost,
                    baseline=base,
                    saved=saved,
                    co2e=co2,
                    co2e_tokens=co2tok,
                    escalated=esc,
                    coalesced=coal,
                    cache_hit=hits,
                )
            for i, tier, n, cost, toks in conn.execute(
                f"SELECT {b}, tier, COUNT(*), TOTAL({_PAID} cost_usd END), "
                f"TOTAL({_PAID} prompt_tokens + completion_tokens END) {_W} GROUP BY 1, 2",
                a,
            ):
                out[i]["tiers"][tier] = [n, cost, toks]
            lat: dict[int, list[float]] = {}
            for i, v in conn.execute(f"SELECT {b}, latency_ms {_W}", a):
                lat.setdefault(i, []).append(v)
        for i, vals in lat.items():
            out[i]["lat_p50"], out[i]["lat_p99"] = percentile(vals, 0.5), percentile(vals, 0.99)
        return out


def _since(since: float | None) -> float:
    return -math.inf if since is None else since


_W = "FROM requests WHERE ts >= ?"
_PAID = "CASE WHEN coalesced = 0 AND cache_hit = 0 THEN"
_SUMS = (
    "TOTAL(prompt_tokens), TOTAL(completion_tokens), TOTAL(cost_usd), TOTAL(baseline_cost_usd), "
    "TOTAL(saved_usd), TOTAL(energy_kwh), TOTAL(co2e_g), "
    "TOTAL(CASE WHEN co2e_g IS NOT NULL THEN prompt_tokens + completion_tokens END), "
    "TOTAL(escalated), TOTAL(coalesced), TOTAL(cache_hit)"
)
_SERVED = (
    f"TOTAL({_PAID} CASE WHEN outcome = 'ok' THEN completion_tokens END END), "
    f"TOTAL({_PAID} CASE WHEN outcome = 'ok' THEN latency_ms END END)"
)
_REASON = (
    "CASE WHEN instr(value, ':') > 0 THEN substr(value, 1, instr(value, ':') - 1) ELSE value END"
)


def empty_bucket(ts: float) -> dict[str, Any]:
    """One time bucket of the charts, before anything is counted into it."""
    return {
        "ts": ts,
        "n": 0,
        "tiers": {},
        "cost": 0.0,
        "baseline": 0.0,
        "saved": 0.0,
        "co2e": 0.0,
        "co2e_tokens": 0.0,
        "escalated": 0,
        "coalesced": 0,
        "cache_hit": 0,
        "lat_p50": None,
        "lat_p99": None,
    }
