"""Feature version 22: a markdown heading's marks are layout, not what a request asks.

"## " before a line was read as a word ("##", learned from Arena-Hard's structured prompts) and
as two tokens, so a heading put on the first line moved 4.6% of real chat requests a tier up
(bench/INVARIANCE.md). Now the marks are not read; the heading's text and its line are.
"""

from __future__ import annotations

import numpy as np
import pytest

from classifiers import default_scorer
from classifiers.conversation import flatten
from classifiers.features import extract


def _read(text: str) -> str:
    return flatten([{"role": "user", "content": text}]).segments[0][0]


@pytest.mark.parametrize(("sent", "read"), [
    ("## Goal\nWrite a parser for ISO dates.", "Goal\nWrite a parser for ISO dates."),
    ("### NL2SQL task, no explanation ###", "NL2SQL task, no explanation"),
    ("Context:\n   #### **Schema**\nid int", "Context:\nSchema\nid int"),
    ("###### Six\ntext", "Six\ntext"),
])
def test_heading_marks_are_not_read(sent, read):
    assert _read(sent) == read


@pytest.mark.parametrize("text", [
    "# a comment in bare code\nx = 1",  # one "#": bare code's comments far more often
    "####### seven is not a heading",
    "##no space after the marks",
    "issue ## 12 in the middle of a line",
    "C# and F## are languages",
])
def test_what_is_not_a_heading_stays(text):
    assert _read(text) == text


@pytest.mark.parametrize("ask", [
    "How do I sort a list in Python by a key?",
    "Design a geo-distributed, strongly consistent key-value store.",
    "Goal\nExplain how a B-tree stays balanced on insert.",
])
def test_a_heading_on_the_first_line_reads_as_the_request(ask):
    sent = "## " + ask
    a, b = extract(ask), extract(sent)
    assert np.array_equal(a.ids, b.ids) and np.allclose(a.values, b.values)
    scorer = default_scorer()
    assert scorer.score([{"role": "user", "content": sent}]).difficulty == pytest.approx(
        scorer.score([{"role": "user", "content": ask}]).difficulty, abs=1e-9)
