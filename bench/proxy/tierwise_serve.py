"""`tierwise serve` for the benchmark: exactly the CLI, plus a stand-in scorer while the shipped
difficulty scorer (``classifiers.default_scorer``) is not in the tree yet.

    python bench/proxy/tierwise_serve.py --policy bench/proxy/bench-policy.toml --port 18702

With ``classifiers.default_scorer`` importable nothing is patched and this is ``tierwise serve``.
Without it, the Router gets a stand-in scorer (difficulty from the text length, ~2 us) and a line
"tierwise-bench: stand-in scorer" goes to stderr; run.py records which one ran in RESULTS.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class _Score:
    difficulty: float
    uncertainty: float
    n_tokens: int


class StandInScorer:
    """Difficulty from text length: a placeholder with no model, for benchmarks only."""

    def score(self, messages):  # type: ignore[no-untyped-def]
        text = " ".join(str(m.get("content") or "") for m in messages)
        n = max(1, len(text) // 4)
        return _Score(difficulty=min(3.0, n / 200), uncertainty=0.2, n_tokens=n)

    def score_batch(self, batch):  # type: ignore[no-untyped-def]
        return [self.score(m) for m in batch]


def main() -> int:
    try:
        from classifiers import default_scorer  # noqa: F401
    except ImportError:
        from router import engine

        engine.Router.scorer = property(lambda self: self.__dict__.setdefault(  # type: ignore
            "_standin", StandInScorer()))
        print("tierwise-bench: stand-in scorer (classifiers.default_scorer not available)",
              file=sys.stderr, flush=True)
    from router.cli import main as cli_main

    return cli_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
