"""Inline SVG charts for the report and the dashboard: no library, no script, no network.

Numbers are formatted by :func:`fmt` (also used by the KPI tiles); the time axis is labelled in
UTC from the bucket start times.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime

COLORS = ["#2a9d8f", "#e9c46a", "#e76f51", "#264653", "#8ab17d", "#9b5de5", "#f4a261", "#577590"]
W, H, ML, MR, MT, MB = 560, 230, 58, 12, 30, 26
Series = tuple[str, str, list[float | None]]


def _nice(v: float) -> float:
    """Smallest ``4 * step`` >= v with a round step (1, 2, 2.5, 5 x 10^k)."""
    if v <= 0 or not math.isfinite(v):
        return 1.0
    e = 10 ** math.floor(math.log10(v / 4))
    return 4 * next(m * e for m in (1, 2, 2.5, 5, 10) if 4 * m * e >= v)


def fmt(v: float | None, unit: str = "", digits: int = 3) -> str:
    """Human number: ``fmt(0.0123, "$") == "$0.0123"``, ms >= 1000 as s; None -> an en dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if unit == "%":
        return f"{v:.1f}%"
    if unit == "ms" and abs(v) >= 1000:
        v, unit = v / 1000, "s"
    a = abs(v)
    g = f"{v:#.{digits}g}" if digits == 3 else f"{v:.{digits}g}"
    s = f"{v:,.0f}" if a >= 1000 else f"{v:.2f}" if a >= 1 else g if a else "0"
    if a >= 1 and digits < 3 and "." in s:
        s = s.rstrip("0").rstrip(".")
    return f"${s}" if unit == "$" else f"{s} {unit}".strip()


def _frame(
    ymax: float, unit: str, xs: Sequence[float], legend: Sequence[tuple[str, str]]
) -> list[str]:
    pw, ph = W - ML - MR, H - MT - MB
    scale = 1.0
    if unit == "ms" and ymax >= 1000:  # label the whole axis in seconds
        scale, unit = 1000.0, "s"
    out = [f'<svg viewBox="0 0 {W} {H}" width="100%" role="img" class="chart">']
    for i in range(5):
        y = MT + ph - ph * i / 4
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        label = fmt(ymax * i / 4 / scale, unit, 2)
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" class="yl">{label}</text>')
    if xs:
        span = xs[-1] - xs[0]
        tf = "%H:%M" if span < 86400 else "%m-%d %H:%M" if span < 4 * 86400 else "%Y-%m-%d"
        n = len(xs)
        for i in sorted({round(k * (n - 1) / 4) for k in range(5)}):
            x = ML + (i + 0.5) * pw / n
            label = datetime.fromtimestamp(xs[i], UTC).strftime(tf)
            out.append(f'<text x="{x:.1f}" y="{H - 8}" class="xl">{label}</text>')
    lx = ML
    for name, color in legend:
        out.append(f'<rect x="{lx}" y="8" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="17" class="lg">{html.escape(name)}</text>')
        lx += 24 + 7 * len(name)
    return out


def line_chart(xs: Sequence[float], series: Sequence[Series], unit: str = "") -> str:
    """SVG line chart of per-bucket values (None breaks the line); x = bucket start times."""
    vals = [v for _, _, ys in series for v in ys if v is not None]
    ymax = _nice(max(vals, default=0.0))
    out = _frame(ymax, unit, xs, [(n, c) for n, c, _ in series])
    pw, ph, n = W - ML - MR, H - MT - MB, max(len(xs), 1)
    for name, color, ys in series:
        d, pen = [], "M"
        for i, v in enumerate(ys):
            if v is None:
                pen = "M"
                continue
            d.append(f"{pen}{ML + (i + 0.5) * pw / n:.1f},{MT + ph - ph * v / ymax:.1f}")
            pen = "L"
        out.append(
            f'<path d="{" ".join(d)}" stroke="{color}" class="ln">'
            f"<title>{html.escape(name)}</title></path>"
        )
    return "".join(out) + "</svg>"


def bar_chart(xs: Sequence[float], series: Sequence[Series], unit: str = "") -> str:
    """SVG stacked bar chart (one bar per bucket)."""
    totals = [sum(ys[i] or 0 for _, _, ys in series) for i in range(len(xs))]
    ymax = _nice(max(totals, default=0.0))
    out = _frame(ymax, unit, xs, [(n, c) for n, c, _ in series])
    pw, ph, n = W - ML - MR, H - MT - MB, max(len(xs), 1)
    bw = pw / n
    for i in range(len(xs)):
        base = 0.0
        for name, color, ys in series:
            v = ys[i] or 0
            if v:
                y0, y1 = MT + ph - ph * base / ymax, MT + ph - ph * (base + v) / ymax
                out.append(
                    f'<rect x="{ML + i * bw + bw * 0.1:.1f}" y="{y1:.1f}" '
                    f'width="{bw * 0.8:.1f}" height="{y0 - y1:.1f}" fill="{color}">'
                    f"<title>{html.escape(name)}: {fmt(v, unit)}</title></rect>"
                )
            base += v
    return "".join(out) + "</svg>"
