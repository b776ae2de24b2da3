"""How long tierwise's background threads hold the GIL in one stretch (bench/PROFILE.md section 8).

    python bench/proxy/gil_stretch.py [--reps 30]

While the accounting thread or the ledger writer works, the event loop's thread, woken by an
upstream answer, has to wait for the GIL; at concurrency 1 that wait lands in the p99. This runs
the same work on the main thread (Accountant._run on a batch, Ledger._write of a window's rows)
while a ticker thread sleeps 0.2 ms in a
loop and records how late each wake-up is: the ticker's worst lateness during a piece of work is
the longest the loop would have waited for the GIL (plus the scheduler's own wake-up lateness,
given by the "nothing" row). The default policy's real models make the energy estimate run
(~40 us per record), as in production; the bench policy's made-up models skip it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accounting import routings  # noqa: E402  (bench/accounting.py)

from policies import load_policy  # noqa: E402
from router.accounting.ledger import Ledger  # noqa: E402
from router.accounting.metrics import Metrics  # noqa: E402
from router.serving.accountant import _ROUTING, Accountant  # noqa: E402

late: list[float] = []
running = True


def ticker() -> None:
    while running:
        t = time.perf_counter()
        time.sleep(0.0002)
        late.append(time.perf_counter() - t - 0.0002)


def probe(fn, reps: int) -> dict:  # type: ignore[no-untyped-def]
    global late
    worst, walls = [], []
    for _ in range(reps):
        time.sleep(0.01)
        late = []
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        time.sleep(0.002)  # the wake-up that was due during the last stretch
        worst.append(max(late) if late else walls[-1])
    return {"wall_ms_median": round(statistics.median(walls) * 1e3, 3),
            "worst_wait_ms_median": round(statistics.median(worst) * 1e3, 3),
            "worst_wait_ms_max": round(max(worst) * 1e3, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=50, help="requests per accounting batch "
                    "(~2500 req/s x the 20 ms window)")
    ap.add_argument("--rows", type=int, default=250, help="rows per ledger write "
                    "(~2500 req/s x the 0.1 s commit window)")
    args = ap.parse_args()
    policy = load_policy()
    accountant = Accountant(policy, ledger=None, metrics=Metrics())
    accountant._run([(_ROUTING, r, None, time.time()) for r in routings(policy, 100)])  # warm
    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
    conn = ledger._connect()
    batch = [(_ROUTING, r, None, time.time()) for r in routings(policy, args.batch)]
    records = [accountant.record(r, None, time.time()) for r in routings(policy, args.rows)]
    threading.Thread(target=ticker, daemon=True).start()
    time.sleep(0.05)
    out = {
        "nothing (sleep 2 ms)": probe(lambda: time.sleep(0.002), args.reps),
        f"accounting batch of {args.batch}": probe(lambda: accountant._run(batch), args.reps),
        f"ledger write of {args.rows} rows": probe(
            lambda: ledger._write(conn, [ledger._row(r) for r in records]), args.reps),
    }
    global running
    running = False
    for name, r in out.items():
        print(f"{name:<32} wall {r['wall_ms_median']:7.3f} ms   GIL wait: median worst "
              f"{r['worst_wait_ms_median']:.3f} ms, max {r['worst_wait_ms_max']:.3f} ms")
    print(json.dumps({"load": list(__import__("os").getloadavg()), "results": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
