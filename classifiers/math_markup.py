"""Does a request carry math notation? TeX, or math written in Unicode: the `math_markup` feature.

Since feature version 10 a backslash counts only when it starts a TeX command (``\\frac``,
``\\alpha``, ``\\le``): ``"\\n"`` in pasted code, a regex's ``\\d`` or a Windows path are not
math. A code escape glued to a word reads as one letter run (``"\\nuser"``, ``"\\tname"``), so it
is not mistaken for ``\\nu`` or ``\\tau``. Unicode math (``"Σ sin(n)/n"``, ``"∫_0^∞"``,
``"n ≤ 1000"``) counts as TeX does. A ``"$"`` that starts an amount of money is not math (feature
version 9). numpy-free and on the request path: each regex runs only when its trigger byte or a
non-ASCII character is present.
"""

from __future__ import annotations

import re

# The TeX math commands that math problems in the training data use (spot-checked on
# zeroeval_math-l5 and MMLU-Pro), plus the Greek letters and the common operators and fonts.
_GREEK = ("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu "
          "nu xi omicron pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
          "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega")
_OPERATORS = ("frac dfrac tfrac sqrt sum prod int iint oint lim limsup liminf log ln lg exp "
              "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh max min sup inf "
              "det gcd lcm deg arg dim ker Pr mod bmod pmod binom choose cdot times div pm mp "
              "ast star circ bullet oplus otimes le leq ge geq ne neq approx equiv sim simeq "
              "cong propto ll gg infty partial nabla forall exists nexists in notin ni subset "
              "subseteq supset supseteq cup cap setminus emptyset varnothing wedge vee neg "
              "lnot land lor implies iff to gets mapsto rightarrow leftarrow Rightarrow "
              "Leftarrow leftrightarrow Leftrightarrow longrightarrow perp parallel mid nmid "
              "angle triangle prime surd")
_LAYOUT = ("mathrm mathbf mathbb mathcal mathit mathsf mathfrak boldsymbol operatorname text "
           "textbf textit left right big Big bigg Bigg begin end over overline underline "
           "overbrace underbrace hat bar vec dot ddot tilde widehat widetilde dots ldots cdots "
           "vdots ddots lfloor rfloor lceil rceil langle rangle vert Vert quad qquad displaystyle "
           "boxed stackrel underset overset substack")
_ARROWS = ("uparrow downarrow nearrow searrow swarrow nwarrow rightleftarrows leftrightarrows "
           "rightleftharpoons rightharpoonup leftharpoonup longleftarrow hookrightarrow")
TEX_COMMANDS = frozenset(f"{_GREEK} {_OPERATORS} {_LAYOUT} {_ARROWS} ding AA".split())
# Sloppy TeX glues the next symbol onto a command ("\\DeltaH", "\\omegat", "\\textcent": 141
# rows of MMLU-Pro's chemistry and physics have no other math markup): these commands also
# count as a prefix. Only ones of three letters or more whose first letter is not a C escape
# (n t r b f v a e u x U), so "\\nabla" must be exact and "\\nuser" or "\\tname" in code stay
# escapes; "text" is the exception that TeX's text-mode symbols need.
_ESCAPES = frozenset("ntrbfvaeuxU")
GLUED_PREFIXES = tuple(sorted(
    {c for c in _GREEK.split() if len(c) >= 3 and c[0] not in _ESCAPES} | {"math", "text"}))


def _trie_pattern(words: frozenset[str] | tuple[str, ...]) -> str:
    """A regex matching exactly ``words``, as a trie of nested groups: at each backslash the
    engine follows one branch per letter instead of trying every word (a flat alternation of
    the 224 commands cost 8.5 ms on 100 KB of code full of escapes; this, 2 ms)."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:
        alts = [re.escape(ch) + emit(node[ch]) for ch in sorted(node) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


# A whole command ends at a non-letter; a glued prefix need not.
_COMMAND = re.compile(rf"\\(?:{_trie_pattern(TEX_COMMANDS)}(?![A-Za-z])|"
                      rf"{_trie_pattern(GLUED_PREFIXES)})".encode())
# A dollar sign that starts an amount of money ("$3.50,", "$1,200 "): digits, then anything but
# a letter, digit, "$" or a TeX character, so "$2x$", "$10$" and "$2^{n}$" stay math. "$" was the
# feature's most frequent byte in word problems and price lists, where it says nothing about
# TeX, and in GSM8K-like problems the feature ranked at random (bench/FEATURE_SHARES.md).
_CURRENCY = re.compile(rb"\$\d[\d,]*(?:\.\d+)?(?![\w$^_{}\\])")
# The Mathematical Operators blocks (without U+2212 "−" and U+2219 "∙", a typeset minus and a
# bullet in plain prose), Miscellaneous Mathematical Symbols A/B, Mathematical Alphanumerics,
# and a Greek letter standing alone (not next to another Greek letter, so Greek prose is not
# math).
_UNICODE_MATH = re.compile(
    "[\u2200-\u2211\u2213-\u2218\u221a-\u22ff\u27c0-\u27ef\u2980-\u2aff"
    "\U0001d400-\U0001d7ff]"
    "|(?<![\u0370-\u03ff\u1f00-\u1fff])[\u0391-\u03a9\u03b1-\u03c9]"
    "(?![\u0370-\u03ff\u1f00-\u1fff])")


def has_math_markup(raw: bytes, text: str, dollars: int, backslashes: int,
                    non_ascii: bool) -> bool:
    """Whether ``text`` (``raw`` its UTF-8 bytes) holds TeX or Unicode math; ``dollars`` and
    ``backslashes`` are its counts of those bytes, ``non_ascii`` whether it has any character
    past ASCII (the counts come from the caller's one pass over the bytes)."""
    if dollars and dollars > len(_CURRENCY.findall(raw)):
        return True
    if backslashes and _COMMAND.search(raw) is not None:
        return True
    return non_ascii and _UNICODE_MATH.search(text) is not None

