"""Rerun every common-sense run of bench/COMMONSENSE.md and rewrite its generated parts.

Runs bench/commonsense.py (through `tierwise score`, as a blind evaluator does) for each
hand-written set x split (test, dev) x scorer (fast, accurate) on the embedded demo policy, then
replaces the table under "## Summary (the ALL rows below)" and everything from "## Every run" on.
The prose in between is written by hand and left alone: reread it against the new numbers.

    python bench/commonsense_report.py [--out bench/COMMONSENSE.md] [--print]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import commonsense  # noqa: E402
from hand_written import DIR as HAND_WRITTEN_DIR  # noqa: E402
from hand_written import FIFTH, FRESH, NATURAL, REQUESTS  # noqa: E402

SETS = (  # (file in bench/commonsense, named in bench/hand_written.py; label in the summary)
    (NATURAL, f"natural phrasing ({NATURAL})"),
    (FRESH, f"written apart ({FRESH})"),
    (FIFTH, f"a fifth writer ({FIFTH})"),
    (REQUESTS, f"length uninformative ({REQUESTS})"),
)
SUMMARY = "## Summary (the ALL rows below)"
EVERY_RUN = "## Every run"
HEADER = ("| set | scorer | split | AUC | length AUC | length-matched AUC | length's matched AUC "
          "| easy→large | hard→small | easy→small |\n|---|---|---|---|---|---|---|---|---|---|")


def run(data: str, split: str, scorer: str) -> tuple[dict, str]:
    """bench/commonsense.py's metrics and printed report for one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.json"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            commonsense.main(["--data", str(HAND_WRITTEN_DIR / data),
                              "--split", split, "--scorer", scorer, "--json", str(out)])
        return json.loads(out.read_text()), printed.getvalue().rstrip() + "\n"


def summary_row(label: str, m: dict) -> str:
    g = m["overall"]
    easy = g["tier_distribution"]["easy"]
    small = easy.get(m["tiers"][0], 0) / max(sum(easy.values()), 1)
    cells = [label, m["scorer"], m["split"], commonsense.fmt(g["auc_difficulty"]),
             commonsense.fmt(g["auc_length"]), commonsense.fmt(g["matched_auc_difficulty"]),
             commonsense.fmt(g["matched_auc_length"]), commonsense.fmt(g["easy_to_largest"], True),
             commonsense.fmt(g["hard_to_smallest"], True), commonsense.fmt(small, True)]
    return "| " + " | ".join(cells) + " |"


def rewrite(text: str, rows: list[str], reports: list[str]) -> str:
    """``text`` (COMMONSENSE.md) with its summary table and its "Every run" section replaced."""
    if SUMMARY not in text or EVERY_RUN not in text:
        raise SystemExit(f"the report needs the sections {SUMMARY!r} and {EVERY_RUN!r}")
    head, rest = text.split(SUMMARY, 1)
    prose = rest.split("\n\n", 2)[2]  # after the old table: "\n\n" + table + "\n\n" + prose
    prose = prose[: prose.index(EVERY_RUN)]
    table = HEADER + "\n" + "\n".join(rows)
    return (f"{head}{SUMMARY}\n\n{table}\n\n{prose}{EVERY_RUN}\n\n" + "\n".join(reports))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "COMMONSENSE.md"))
    ap.add_argument("--print", action="store_true", help="print the summary table only")
    args = ap.parse_args()
    rows, reports = [], []
    for data, label in SETS:
        for split in ("test", "dev"):
            for scorer in ("fast", "accurate"):
                metrics, printed = run(data, split, scorer)
                rows.append(summary_row(label, metrics))
                reports.append(printed)
    if args.print:
        print(HEADER + "\n" + "\n".join(rows))
        return 0
    path = Path(args.out)
    path.write_text(rewrite(path.read_text(encoding="utf-8"), rows, reports), encoding="utf-8")
    print(f"rewrote {path}: {len(rows)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
