"""The SQLite ledger on real files: round trip, summary, retention, prompts, workers, SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_accounting_workload import make_records

from router.accounting.ledger import Ledger
from router.accounting.records import Prices, build_record, summarize
from router.accounting.report import bucket_grid, bucket_records

ROOT = Path(__file__).parents[1]


def quick_record(i: int, ts: float | None = None, prefix: str = "r", prompt: str | None = None):
    return build_record(
        request_id=f"{prefix}-{i}",
        tier="small",
        model="m",
        prompt_tokens=10 + i,
        completion_tokens=5,
        baseline_model="big",
        prices=Prices(1, 2),
        baseline_prices=Prices(10, 20),
        latency_ms=1.0 + i,
        ts=ts,
        prompt_text=prompt,
        with_energy=False,
    )


def test_roundtrip_and_summary(tmp_path):
    recs = make_records(300, seed=11)
    led = Ledger(tmp_path / "l.db", retention_days=None)
    for r in recs:
        led.append(r)
    got = led.query()
    assert [r.request_id for r in got] == [r.request_id for r in recs]
    for a, b in zip(got, recs, strict=True):
        assert a.to_dict() == {**b.to_dict(), "prompt_text": None}
    since = recs[150].ts
    assert [r.request_id for r in led.query(since)] == [r.request_id for r in recs[150:]]
    for window in (None, since):
        s_sql = led.summary(window)
        s_py = summarize(r for r in recs if window is None or r.ts >= window)
        assert s_sql.keys() == s_py.keys()
        for k, v in s_py.items():
            assert s_sql[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k
    assert led.summary(recs[-1].ts + 1)["requests"] == 0
    start, width, count = bucket_grid(recs[150].ts, recs[-1].ts)
    assert 10 <= count <= 40
    sql_b = led.buckets(since, start, width, count)
    py_b = bucket_records(recs[150:], start, width, count)
    assert sum(b["n"] for b in sql_b) == 150
    for a, b in zip(sql_b, py_b, strict=True):
        assert a.keys() == b.keys() and a["tiers"].keys() == b["tiers"].keys()
        for k, v in b.items():
            if k == "tiers":
                for t, vals in v.items():
                    assert a[k][t] == pytest.approx(vals, rel=1e-9)
            else:
                assert a[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k
    led.close()
    assert Ledger(tmp_path / "l.db").count() == 300  # persisted, reopened


def test_append_does_not_block(tmp_path):
    led = Ledger(tmp_path / "l.db")
    recs = [quick_record(i) for i in range(5000)]
    t = time.perf_counter()
    for r in recs:
        led.append(r)
    assert time.perf_counter() - t < 0.5  # queued, not written in the caller
    assert led.flush() and led.count() == 5000
    led.close()
    with pytest.raises(RuntimeError):
        led.append(recs[0])


def test_retention_by_age_and_rows(tmp_path):
    now = time.time()
    led = Ledger(tmp_path / "l.db", retention_days=1)
    for i in range(10):
        led.append(quick_record(i, ts=now - 3 * 86400 + i))  # three days old
    for i in range(10):
        led.append(quick_record(i, ts=now - 60 + i, prefix="new"))
    led.flush()
    assert {r.request_id.split("-")[0] for r in led.query()} == {"new"}  # writer pruned
    assert led.prune(now=now + 2 * 86400) == 10  # and they age out too
    led.close()
    led = Ledger(tmp_path / "rows.db", retention_days=None, max_rows=25)
    for i in range(40):
        led.append(quick_record(i, ts=now + i))
    led.flush()
    led.prune()
    assert [r.request_id for r in led.query()] == [f"r-{i}" for i in range(15, 40)]
    led.close()


@pytest.mark.parametrize("store", [False, True])
def test_prompt_text_only_when_enabled(tmp_path, store):
    path = tmp_path / "p.db"
    led = Ledger(path, store_prompts=store)
    led.append(quick_record(1, prompt="SECRET-PROMPT-TEXT-42"))
    assert led.query()[0].prompt_text == ("SECRET-PROMPT-TEXT-42" if store else None)
    led.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("p.db"))
    assert (b"SECRET-PROMPT-TEXT-42" in raw) is store


def _worker(path: str, prefix: str, n: int) -> None:
    led = Ledger(path)
    for i in range(n):
        led.append(quick_record(i, prefix=prefix))
        if i % 50 == 0:
            time.sleep(0.001)  # interleave commits with the other writer
    led.close()


def test_two_processes_write_concurrently(tmp_path):
    path = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(path, p, 1500)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = [r.request_id for r in Ledger(path).query()]
    assert len(ids) == 3000 and len(set(ids)) == 3000
    assert {i.split("-")[0] for i in ids} == {"a", "b"}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_committed_rows_survive_sigkill(tmp_path):
    path = tmp_path / "killed.db"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from test_ledger import quick_record
        from router.accounting.ledger import Ledger
        led = Ledger({str(path)!r})
        for i in range(200):
            led.append(quick_record(i, prefix="committed"))
        assert led.flush()
        print("flushed", flush=True)
        i = 0
        while True:  # keep writing until killed
            led.append(quick_record(i, prefix="late"))
            i += 1
            time.sleep(0.0005)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until some later batches are committed too
            with sqlite3.connect(path) as conn:
                if conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] > 220:
                    break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "killed.db-wal").exists()  # never checkpointed cleanly
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    ids = {r.request_id for r in Ledger(path).query()}
    assert {f"committed-{i}" for i in range(200)} <= ids
    assert any(i.startswith("late-") for i in ids)  # later batches committed too


def test_older_ledger_gets_new_columns(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY, request_id TEXT, ts REAL)")
    conn.execute("INSERT INTO requests (request_id, ts) VALUES ('old-1', 1.0)")
    conn.commit()
    conn.close()
    led = Ledger(path, retention_days=None)
    led.append(quick_record(1, ts=2.0))
    assert led.count() == 2
    assert led.query(since=1.5)[0].request_id == "r-1"
    led.close()
