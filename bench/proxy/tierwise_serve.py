"""`tierwise serve` (or `route`) for the benchmark: exactly the CLI, plus a stand-in scorer while
the shipped difficulty scorer (``classifiers.default_scorer()``) cannot load yet.

    python bench/proxy/tierwise_serve.py --policy bench/proxy/bench-policy.toml --port 18702
    python bench/proxy/tierwise_serve.py route "What is 2+2?"

If ``classifiers.default_scorer()`` loads (the module exists and a trained model ships), nothing
is patched and this is the `tierwise` CLI. Otherwise the Router gets a stand-in scorer
(difficulty from the text length, ~2 us) and a line "tierwise-bench: stand-in scorer" goes to
stderr; run.py records which one ran in RESULTS.md.

`serve` without ``--ledger`` writes its decision ledger into a temporary directory of its own,
not the working directory: benchmark runs used to grow the repository's own tierwise-ledger.db
to hundreds of MB, and every run paid for inserts into that ever larger file. The ledger stays
on, as in production. uvicorn re-raises SIGTERM after its shutdown (so atexit does not run):
each start removes the directories of benchmark servers that are no longer running.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LEDGER_PREFIX = "tierwise-bench-ledger-"


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


def scorer_available() -> str | None:
    """None if the shipped scorer loads, else why not."""
    try:
        from classifiers import default_scorer

        default_scorer()
    except Exception as exc:  # noqa: BLE001 - ImportError, FileNotFoundError (no model), ...
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None


def main() -> int:
    why = scorer_available()
    if why is not None:
        from router import decider

        # Decider is the base of router.engine.Router and what `route` / `score` use
        decider.Decider.scorer = property(lambda self: self.__dict__.setdefault(  # type: ignore
            "_standin", StandInScorer()))
        print(f"tierwise-bench: stand-in scorer (classifiers.default_scorer: {why})",
              file=sys.stderr, flush=True)
    if os.environ.get("TIERWISE_TAIL_TRACE"):  # bench/proxy/tail.py: time the slow requests
        import tail_trace

        tail_trace.install()
    from router.cli import main as cli_main

    argv = sys.argv[1:]
    if not argv or argv[0] not in ("serve", "route", "score"):
        argv = ["serve", *argv]
    if argv[0] == "serve" and not any(a == "--ledger" or a.startswith("--ledger=") for a in argv):
        argv = [*argv, "--ledger", str(_own_ledger_dir() / "ledger.db")]
    return cli_main(argv)


def _own_ledger_dir() -> Path:
    """A fresh ledger directory named after this process; stale ones of dead servers go."""
    root = Path(tempfile.gettempdir())
    for old in root.glob(LEDGER_PREFIX + "*"):
        pid = old.name[len(LEDGER_PREFIX):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    mine = root / f"{LEDGER_PREFIX}{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    atexit.register(shutil.rmtree, mine, True)
    return mine


if __name__ == "__main__":
    sys.exit(main())
