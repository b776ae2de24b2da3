"""A source's template lines are not learned from (train param ``templates``).

RouterBench's ARC-Challenge prompts share one 5-shot preamble whose words learned ARC's ease
(bench/TEMPLATE_WORDS.md). classifiers/templates.py finds the lines many distinct prompts of a
source share, and the fit's features leave them out; the rows are still scored as sent.
"""

from __future__ import annotations

from pathlib import Path

from classifiers.data import load_rows, row_messages
from classifiers.templates import MIN_PROMPTS, fit_conversations, template_lines, without_template
from classifiers.train import DEFAULT_PARAMS

DATA = Path(__file__).resolve().parents[1] / "data"
PREAMBLE = "Which of the following best explains why magnets stick to a refrigerator door?\nAnswer:"


def _rows(n: int, source: str = "bench") -> list[dict]:
    return [{"source": source, "prompt": f"{PREAMBLE}\nB\n\nQuestion {i}: what is {i} + {i}?"}
            for i in range(n)]


def test_a_line_in_enough_distinct_prompts_is_the_template():
    lines = template_lines(_rows(MIN_PROMPTS))["bench"]
    assert PREAMBLE.split("\n")[0] in lines and "Answer:" in lines and "B" in lines
    assert not any(line.startswith("Question") for line in lines)
    assert template_lines(_rows(MIN_PROMPTS - 1))["bench"] == frozenset()


def test_a_prompt_repeated_across_rows_counts_once():
    one = _rows(1)
    assert template_lines(one * (MIN_PROMPTS * 2))["bench"] == frozenset()


def test_templates_are_per_source():
    rows = _rows(MIN_PROMPTS // 2, "a") + _rows(MIN_PROMPTS // 2, "b")
    assert template_lines(rows) == {"a": frozenset(), "b": frozenset()}


def test_the_fit_reads_the_rows_without_it():
    rows = _rows(MIN_PROMPTS)
    convs = fit_conversations(rows)
    assert [c.strip() for c in convs] == [f"Question {i}: what is {i} + {i}?" for i in range(20)]
    assert rows[0]["prompt"].startswith(PREAMBLE)  # the rows themselves are not changed


def test_a_prompt_that_is_only_template_is_kept_whole():
    lines = frozenset({"Answer:", "B"})
    assert without_template("Answer:\nB", lines) == "Answer:\nB"
    msgs = [{"role": "user", "content": "Answer:\nB\nWhy?"}]
    assert without_template(msgs, lines) == [{"role": "user", "content": "Why?"}]


def test_routerbench_arc_preamble_is_found_in_the_repo_data():
    rows = [r for r in load_rows(DATA / "routing-train.jsonl.gz") if r["source"] == "routerbench"]
    lines = template_lines(rows)["routerbench"]
    arc = next(r for r in rows if "refrigerator door contains iron" in r["prompt"])
    read = without_template(row_messages(arc), lines)
    assert "refrigerator" not in read and "Print only a single choice" not in read
    assert DEFAULT_PARAMS["templates"] == 1
