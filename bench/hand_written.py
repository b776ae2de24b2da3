"""The hand-written evaluation sets of bench/commonsense (never trained on), named once.

The bench scripts and the tests import these names (``from bench.hand_written import ...`` with
the repository root on sys.path; pyproject.toml puts it there for pytest), so a set is added or
renamed here. Each script keeps its own order and labels. Standard library only: cheap to import.
"""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent / "commonsense"

REQUESTS = "requests.jsonl"  # length deliberately uninformative (commonsense/README.md)
NATURAL = "natural.jsonl"  # phrased the way users write: length informative (NATURAL.md)
FRESH = "fresh.jsonl"  # written later, apart from the other two and the anchors (FRESH.md)
FIFTH = "fifth.jsonl"  # a fifth writer, after the blind set, seeing none of the others (FIFTH.md)

SETS = (REQUESTS, NATURAL, FRESH, FIFTH)  # in the order they were written
# written blind on 2026-12-07 and read once (BLIND.md): a test split only, no choice is made on
# it, so the scripts that read dev splits leave it out
BLIND = "blind.jsonl"
READ_ONCE = (BLIND,)
# easy and hard instructions over the same pasted material (bench/material_pairs.py)
MATERIAL_PAIRS = Path(__file__).resolve().parent / "material" / "pairs.jsonl"
