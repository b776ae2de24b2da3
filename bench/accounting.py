"""CPU added per request by accounting (router/serving/accountant.py), split by where it runs.

    /tmp/v1/bin/python bench/accounting.py [--n 5000]

- on the event loop: pricing the Routing (engine) and `Accountant.on_routing` (build the
  RequestRecord, queue it);
- in the accounting thread: ecologits' estimate, the Prometheus updates, the ledger append;
- in the ledger's writer thread: SQLite inserts (batched, one transaction per batch).

Each part is timed with thread CPU time over `--n` requests shaped like the demo's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from policies import load_policy
from router.accounting.ledger import Ledger
from router.accounting.metrics import Metrics
from router.routing import Routing, price
from router.serving.accountant import Accountant


def routings(policy, n: int) -> list[Routing]:
    from policies import decide
    from policies.decide import RequestFacts

    class Score:  # the decision is not what is measured here
        difficulty, uncertainty, n_tokens = 0.0, 0.1, 20

    decision = decide(policy, Score(), RequestFacts())
    out = []
    for i in range(n):
        tier = policy.tiers[i % len(policy.tiers)]
        r = Routing(decision, tier.name, tier.model, [], stream=bool(i % 2),
                    decision_ms=0.4, latency_ms=300.0 + i % 50, ttft_ms=80.0)
        r.usage = {"prompt_tokens": 50 + i % 300, "completion_tokens": 100 + i % 400}
        out.append(r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("accounting.json"))
    args = parser.parse_args()
    policy = load_policy()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "ledger.db")
        accountant = Accountant(policy, ledger=ledger, metrics=Metrics())
        # warm up: ecologits import, model lookup caches, SQLite file, threads
        for r in routings(policy, 200):
            accountant.on_routing(r)
        accountant.flush(60)
        ledger.flush(60)

        rs = routings(policy, args.n)
        tiers = {t.name: t for t in policy.tiers}  # routings() names only the policy's tiers
        t0 = time.thread_time()
        for r in rs:
            price(r, tiers[r.tier], policy.largest)
        priced = time.thread_time() - t0
        t0 = time.thread_time()
        for r in rs:  # what the event loop does: build the record, queue it
            accountant.on_routing(r)
        built = time.thread_time() - t0
        accountant.flush(120)
        records = [accountant.record(r) for r in rs]

        # the background work, timed on this thread (the same code the accounting thread runs)
        quiet = Accountant(policy, ledger=None, metrics=Metrics())
        t0 = time.thread_time()
        for rec in records:
            quiet._finish(rec, quiet._energy_model(rec.tier, rec.model))
        background = time.thread_time() - t0
        t0 = time.thread_time()
        for rec in records:
            quiet._finish(rec, None)  # metrics only: the energy estimate's share
        metrics_only = time.thread_time() - t0

        conn = ledger._connect()
        rows = [ledger._row(rec) for rec in records]
        t0 = time.thread_time()
        for k in range(0, len(rows), 100):  # batches as the writer sees them under load
            ledger._write(conn, rows[k:k + 100])
        sqlite = time.thread_time() - t0
        conn.close()
        ledger.close()
    us = {k: v / args.n * 1e6 for k, v in {
        "event_loop_price_us": priced, "event_loop_on_routing_us": built,
        "thread_energy_metrics_us": background, "thread_metrics_only_us": metrics_only,
        "ledger_sqlite_insert_us": sqlite}.items()}
    us["thread_energy_us"] = us["thread_energy_metrics_us"] - us["thread_metrics_only_us"]
    result = {"n": args.n, **{k: round(v, 1) for k, v in us.items()}}
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
