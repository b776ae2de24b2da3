"""The `tierwise` command line: route, score, serve, and the training/reporting commands.

Fast commands (route, score) import only policies, the scorer and router.decider: never
litellm, asyncio, the proxy or the other commands' modules (`bench/proxy/startup.py --route`
times them). Every expected failure prints one line naming the problem and the fix, and exits
non-zero; no tracebacks for user mistakes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from policies.errors import PolicyError
from router.errors import TierwiseError


def _policy_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="FILE", help="policy TOML (default: embedded demo)")


def _decider(args: argparse.Namespace) -> Any:
    """The Decider of --policy, with --scorer (when given) in place of the policy's `scorer`."""
    from dataclasses import replace

    from policies import load_policy
    from router.decider import Decider

    policy = load_policy(args.policy)
    if args.scorer is not None:  # one Decider: its policy warnings are logged once
        policy = replace(policy, scorer=args.scorer)
    return Decider(policy)


def _scorer_arg(p: argparse.ArgumentParser) -> None:
    from classifiers import SCORERS

    p.add_argument("--scorer", choices=SCORERS, default=None,
                   help="difficulty scorer (default: the policy's `scorer`)")


def cmd_route(args: argparse.Namespace) -> int:
    # One prompt needs no BLAS thread pool: OpenBLAS starts one thread per core at numpy's
    # import, which spins ~100 ms of CPU on the other core for nothing.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from router.messages import as_messages

    decider = _decider(args)
    messages = as_messages(_prompt(args.text))
    decision = decider.route(messages)
    if args.json:
        print(json.dumps(decision.to_dict()))
    else:
        print(f"tier: {decision.tier} ({decision.model})")
        print(f"difficulty: {decision.difficulty:.3f} +/- {decision.uncertainty:.3f}")
        print("p_sufficient: " + ", ".join(f"{k}={v:.2f}" for k, v in
                                           decision.p_sufficient.items()))
        print(f"confidence: {decision.confidence:.2f}")
        for reason in decision.reasons:
            print(f"  - {reason}")
        try:
            why = decider.scorer.explain(messages)
        except ValueError as exc:  # a model that is not the linear table: no parts to show
            print(f"why: {exc}")
        else:
            _print_why(why, decision.difficulty)
    return 0


def _print_why(why: Any, difficulty: float, shown: int = 6) -> None:
    """The largest parts of d and the words that add most (classifiers.explain): why this tier."""
    print(f"why d = {difficulty:.2f} (the parts of the model that add most):")
    values = list(why.parts.values())
    for name, value in list(why.parts.items())[:shown]:
        print(f"  {value:+.2f}  {name}")
    if values[shown:]:
        print(f"  {sum(values[shown:]):+.2f}  {len(values) - shown} smaller parts")
    if why.words:
        print("  words that add most: " + ", ".join(
            f"{word!r} {value:+.2f}" for word, value in why.words[:shown]))


def _prompt(text: str | None) -> str:
    """The prompt of `tierwise route`: the argument, or stdin for `-` or no argument when
    stdin is a pipe or a file (`echo hi | tierwise route`, `tierwise route - < prompt.txt`)."""
    if text is not None and text != "-":
        return text
    if text is None and sys.stdin.isatty():
        raise TierwiseError("give the prompt as an argument (tierwise route \"What is 2+2?\"), "
                            "or - to read it from stdin")
    prompt = sys.stdin.read()
    if not prompt.strip():
        raise TierwiseError("stdin was empty: pipe the prompt in, e.g. "
                            "echo 'What is 2+2?' | tierwise route -")
    return prompt.rstrip("\n")


def _read_score_line(number: int, line: str) -> list[dict[str, Any]]:
    from router.messages import as_messages

    try:
        item = json.loads(line)
    except ValueError:
        raise TierwiseError(f"line {number}: not valid JSON") from None
    if not isinstance(item, dict):
        raise TierwiseError(f"line {number}: expected a JSON object with 'prompt' or 'messages'")
    if isinstance(item.get("prompt"), str):
        return as_messages(item["prompt"])
    if "messages" in item:
        try:
            return as_messages(item["messages"])
        except TierwiseError as exc:
            raise TierwiseError(f"line {number}: {exc.message}") from None
    raise TierwiseError(f"line {number}: needs a 'prompt' string or a 'messages' list")


def cmd_score(args: argparse.Namespace) -> int:
    from policies import RequestFacts, decide

    router = _decider(args)
    try:
        handle = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as exc:
        hint = ""
        if any(ch.isspace() for ch in args.file.strip()) and os.sep not in args.file:
            # a prompt typed where the file goes: the command that takes one is `route`
            hint = (". Fix: score one prompt with `tierwise route \"...\"` (add --json for "
                    "the numbers); `tierwise score` reads a JSONL file, or - for stdin")
        raise TierwiseError(f"cannot read {args.file}: {exc.strerror}{hint}") from None
    with handle:
        lines = [line for line in handle]
    items: list[tuple[int, list[dict[str, Any]] | None, str | None]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append((number, _read_score_line(number, line), None))
        except TierwiseError as exc:
            items.append((number, None, exc.message))
    good = [m for _, m, _ in items if m is not None]
    scores = iter(router.scorer.score_batch(good) if good else [])
    failures = 0
    out = sys.stdout
    for number, messages, error in items:
        if messages is None:
            failures += 1
            print(f"tierwise score: {error}", file=sys.stderr)
            out.write(json.dumps({"line": number, "error": error}) + "\n")
            continue
        score = next(scores)
        decision = decide(router.policy, score, RequestFacts())
        row: dict[str, Any] = {
            "line": number, "difficulty": round(score.difficulty, 5),
            "uncertainty": round(score.uncertainty, 5), "n_tokens": score.n_tokens,
            "tier": decision.tier,
            "p_sufficient": {k: round(v, 5) for k, v in decision.p_sufficient.items()},
        }
        if args.explain:
            try:
                why = router.scorer.explain(messages)
            except ValueError as exc:  # a model that is not the linear table
                raise TierwiseError(f"--explain: {exc}") from None
            row["parts"] = {k: round(v, 5) for k, v in why.parts.items()}
            row["words"] = [[w, round(v, 5)] for w, v in why.words[:EXPLAINED_WORDS]]
        out.write(json.dumps(row) + "\n")
    return 1 if failures else 0


EXPLAINED_WORDS = 8  # `score --explain`: the words that add most, per line


def cmd_serve(args: argparse.Namespace) -> int:
    import sqlite3

    import uvicorn

    from policies import load_policy
    from router.serving.app import build_app
    from router.serving.server import run
    from router.serving.startup import check_keys, check_port

    policy = load_policy(args.policy)
    check_keys(policy, args.policy, args.allow_missing_keys)
    if args.workers != 1:
        return _serve_workers(args, policy)
    check_port(args.host, args.port)
    path = policy.ledger.path if args.ledger is None else args.ledger
    ledger = None
    if path:
        from pathlib import Path

        from router.accounting.ledger import Ledger

        try:
            ledger = Ledger(path, policy.ledger.retention_days, policy.ledger.store_prompts)
        except (OSError, sqlite3.Error) as exc:
            raise TierwiseError(f"cannot open the ledger {path}: {exc}; pass --ledger PATH "
                                "or --ledger '' to run without one") from None
        where = f"ledger: {Path(path).resolve()}"
    else:
        where = "no ledger"
    # build_app = the proxy app behind router.serving.guard (keys, input limits, budgets, rate
    # limits, cache) on the policy's shared state, coalescing across replicas when that is Redis,
    # with accounting into /metrics and the ledger (/dashboard).
    app = build_app(policy, ledger=ledger, freeze_gc=True)
    print(f"tierwise: serving on http://{args.host}:{args.port} "
          f"(policy: {args.policy or 'embedded demo'}; {where})", file=sys.stderr)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            access_log=args.access_log, **app.server_options())
    try:
        run(config)  # a graceful SIGTERM stop returns here: exit 0, not 143
    finally:
        app.accountant.close()  # what was answered reaches the ledger before it closes
        if ledger is not None:
            ledger.close()
    return 0


def _serve_workers(args: argparse.Namespace, policy: Any) -> int:
    """`serve --workers N`: bind once here, N worker processes serve (router.serving.workers)."""
    import sqlite3
    from pathlib import Path

    from router.accounting.ledger import Ledger
    from router.serving.workers import WorkerSpec, check_workers, serve_workers

    note = check_workers(policy, args.workers)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if metrics_dir and not os.path.isdir(metrics_dir):
        raise TierwiseError(f"PROMETHEUS_MULTIPROC_DIR={metrics_dir} is not a directory. Fix: "
                            "create it (empty), or unset it to use a temporary one")
    path = policy.ledger.path if args.ledger is None else args.ledger
    if path:
        # Opened (schema created) once here so a bad path is one clear error, not N tracebacks.
        try:
            Ledger(path, policy.ledger.retention_days, policy.ledger.store_prompts).close()
        except (OSError, sqlite3.Error) as exc:
            raise TierwiseError(f"cannot open the ledger {path}: {exc}; pass --ledger PATH "
                                "or --ledger '' to run without one") from None
        path = str(Path(path).resolve())
    from router.serving.startup import worker_sockets

    socks = worker_sockets(args.host, args.port, args.workers)
    where = f"ledger: {path}" if path else "no ledger"
    print(f"tierwise: serving on http://{args.host}:{args.port} with {args.workers} workers "
          f"(policy: {args.policy or 'embedded demo'}; {where})", file=sys.stderr)
    print(f"tierwise: {note}", file=sys.stderr)
    spec = WorkerSpec(policy=args.policy, ledger=path or "", log_level=args.log_level,
                      access_log=args.access_log,
                      metrics_dir=metrics_dir)
    return serve_workers(spec, args.workers, socks)


def _workers_arg(value: str) -> int:
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more (got {value!r})")
    return workers


def _delegated(module: str, name: str) -> tuple[Callable[..., None], Callable[..., int]] | None:
    """(add_arguments, run) from another package, if it is installed."""
    try:
        mod = __import__(module, fromlist=["_"])
    except ImportError:
        return None
    add = getattr(mod, f"add_{name}_arguments", None)
    run = getattr(mod, f"run_{name}", None)
    return (add, run) if add and run else None


DESCRIPTION = """\
Send every LLM request to the cheapest model tier that will answer it well.
With no --policy, commands use the embedded demo policy (three simulated tiers, no keys)."""
EPILOG = """\
examples:
  tierwise serve                          the OpenAI-compatible proxy on 127.0.0.1:8000
  tierwise route "What is 2+2?"           the decision for one prompt (no network call)
  tierwise COMMAND --help                 a command's options

docs: README.md and docs/ in the tierwise repository"""

# Commands whose arguments and code live in other modules: (module, command, help).
DELEGATED = (
    ("classifiers.commands", "train", "train the difficulty classifier"),
    ("classifiers.commands", "eval", "routing-quality metrics on a labeled set"),
    ("classifiers.commands", "calibrate", "fit a model's ability or a policy's target"),
    ("router.accounting.report", "report", "efficiency digest from the ledger"),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. With `command` one of the commands, only that command's
    subparser is built (argparse's per-parser set-up, gettext lookups included, is a good part
    of `tierwise route`'s start-up), and a delegated command's module is imported only then;
    otherwise (help, a mistyped command) every command is listed."""
    parser = argparse.ArgumentParser(prog="tierwise", description=DESCRIPTION,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    known = {"route", "score", "serve", *(name for _, name, _ in DELEGATED)}

    def wanted(name: str) -> bool:
        return command not in known or command == name

    if wanted("route"):
        p = sub.add_parser("route", help="decide the tier for a prompt (no network call)")
        p.add_argument("text", nargs="?", default=None,
                       help="the prompt; - (or none, when piped) reads it from stdin")
        p.add_argument("--json", action="store_true", help="print the decision as JSON")
        _policy_arg(p)
        _scorer_arg(p)
        p.set_defaults(func=cmd_route)

    if wanted("score"):
        p = sub.add_parser("score",
                           help="score a JSONL file of prompts (one JSON line out per line)")
        p.add_argument("file", help="JSONL with 'prompt' or 'messages' per line; - for stdin")
        p.add_argument("--explain", action="store_true",
                       help="add each line's 'parts' of its difficulty (they sum to it) and the "
                            f"{EXPLAINED_WORDS} 'words' that add most")
        _policy_arg(p)
        _scorer_arg(p)
        p.set_defaults(func=cmd_score)

    if wanted("serve"):
        p = sub.add_parser("serve", help="run the OpenAI-compatible proxy")
        _policy_arg(p)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--ledger", metavar="PATH", default=None,
                       help="decision ledger (SQLite) file; default: the policy's [ledger] path, "
                            "relative to the working directory; '' for none")
        p.add_argument("--allow-missing-keys", action="store_true",
                       help="start even if provider-key variables the policy names are unset "
                            "(those tiers fail; /readyz answers 503 naming them)")
        p.add_argument("--workers", type=_workers_arg, default=1, metavar="N",
                       help="serve with N processes on one port (default 1); without Redis "
                            "state, coalescing and the cache are per worker and budgets or "
                            "rate limits are refused (docs/operations.md)")
        p.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
        # Off by default: at info level uvicorn's line per request cost ~12% of the proxy's
        # CPU per request (bench/PROFILE.md); the ledger and /metrics record every request.
        p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                       help="log one line per HTTP request (uvicorn's access log; default: off)")
        p.set_defaults(func=cmd_serve)

    for module, name, help_text in DELEGATED:
        if not wanted(name):
            continue
        p = sub.add_parser(name, help=help_text)
        if name != command:
            continue
        hooks = _delegated(module, name)
        if hooks is not None:
            hooks[0](p)
            p.set_defaults(func=hooks[1])
        else:
            p.set_defaults(func=lambda a, n=name: _unavailable(n))
    return parser


def _unavailable(name: str) -> int:
    print(f"tierwise {name}: not available in this installation", file=sys.stderr)
    return 2


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (its first positional argument), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


# Commands that leave nothing to clean up: the program exits at once after them (see main).
QUICK_EXIT = {"route", "score"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; `argv` None means this is the program (the `tierwise` script,
    `python -m router`): then `route` and `score` end the process themselves."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    code = _run(args)
    if program and args.command in QUICK_EXIT:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Flush and leave without the interpreter's teardown. After `route` / `score` there is
    nothing to close or write, and tearing down the scorer (numpy, onnxruntime, tokenizer
    tables) took 35-175 ms of a ~0.6 s `tierwise route` here (bench/proxy/startup.py --route)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left (`tierwise score big.jsonl | head`): not an error
        pass
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except PolicyError as exc:
        print(f"tierwise: invalid policy: {exc}", file=sys.stderr)
        return 2
    except TierwiseError as exc:
        print(f"tierwise {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tierwise score big.jsonl | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
