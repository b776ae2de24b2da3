"""PNG/SVG plot of routing curves (router vs random vs oracle); matplotlib, train extra."""

from __future__ import annotations

from pathlib import Path

from .metrics import PairResult


def plot_curves(result: PairResult, path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ax.plot(result.shares, result.pgr, "o-", label=f"tierwise (APGR {result.apgr:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random (APGR 0.500)")
    ax.plot(
        result.oracle_shares,
        result.oracle_pgr,
        ":",
        color="green",
        label=f"oracle (APGR {result.oracle_apgr:.3f})",
    )
    ax.axhline(0.5, color="lightgrey", lw=0.8)
    ax.set_xlabel("share of calls to the strong model")
    ax.set_ylabel("performance gap recovered (PGR)")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(p, format=p.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return p
