"""Feature version 21: a code fence is layout, not what a request asks.

The same code pasted with or without its ``` lines is the same request; before, the fence lines
counted as lines and as words at the request's ends, and a structure flag learned from ~120
fenced chat rows read fenced code as easier, so 12 of the 25 real chat requests that hold
fences went a tier up without them (bench/INVARIANCE.md).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from classifiers import default_scorer
from classifiers.conversation import flatten
from classifiers.features import DENSE_NAMES, DENSE_OFF, extract
from classifiers.scorer import MODEL_DIR

CODE = "import re\n\ndef clean(s):\n    return re.sub(r'\\s+', ' ', s).strip()\n"
ASKS = [
    "clean this up?\n\n{fence}python\n" + CODE + "{fence}",
    "I have an SQL table with the following schema:\n{fence}\nevent_id int\nevent_at timestamp\n"
    "{fence}\n\nI would like to count the events per minute since a month ago.",
    "Why does this deadlock?\n{fence}go\nmu.Lock()\nch <- v\nmu.Unlock()\n{fence}\nThanks",
]


def test_fence_lines_are_not_read_but_flagged():
    conv = flatten([{"role": "user", "content": ASKS[0].format(fence="```")}])
    assert conv.segments == [("clean this up?\n\n" + CODE.strip(), 1.0)]
    assert conv.has_code_fence
    tilde = flatten([{"role": "user", "content": "Fix:\n  ~~~\n  x = 1\n  ~~~"}])
    assert tilde.segments == [("Fix:\n  x = 1", 1.0)] and tilde.has_code_fence


@pytest.mark.parametrize("text", [
    "Use ```print(x)``` inline", "What does ``` mean in markdown?", "plain text, no code",
])
def test_what_is_not_a_fence_line_stays(text):
    conv = flatten([{"role": "user", "content": text}])
    assert conv.segments == [(text, 1.0)] and not conv.has_code_fence


def test_a_system_prompts_fences_do_not_flag_the_request():
    conv = flatten([{"role": "system", "content": "Answer in\n```\nmarkdown\n```"},
                    {"role": "user", "content": "What is a monad?"}])
    assert not conv.has_code_fence


@pytest.mark.parametrize("ask", ASKS)
def test_the_same_code_with_or_without_fences_reads_alike(ask):
    """Pasted with or without its fences, a request has the same words, bytes and tokens; only
    `code_fence` (out of the fit: weight 0) and `log_lines` (the first break after a sentence is
    free only outside code, feature version 19) may differ."""
    sent = ask.format(fence="```")
    bare = re.sub(r"(?m)^```[\w+-]*[ \t]*$\n?", "", sent)
    a, b = extract(sent), extract(bare)
    assert a.n_tokens == b.n_tokens
    np.testing.assert_array_equal(a.ids, b.ids)
    apart = np.isin(a.ids, [DENSE_OFF + DENSE_NAMES.index(n) for n in ("code_fence", "log_lines")])
    np.testing.assert_array_equal(a.values[~apart], b.values[~apart])
    weights = json.loads((MODEL_DIR / "model.json").read_text())["dense_features"]
    assert weights["code_fence"] == 0.0
    d = default_scorer("fast")
    # so d moves by the line term alone (a few hundredths on real code; 25 real chat requests
    # with fences: 1 tier change without them, 12 before, bench/INVARIANCE.md)
    line = DENSE_OFF + DENSE_NAMES.index("log_lines")
    gap = float(a.values[a.ids == line].sum() - b.values[b.ids == line].sum())
    moved = weights["log_lines"] * gap
    assert d.score(sent).difficulty - d.score(bare).difficulty == pytest.approx(moved, abs=1e-4)
