"""The decision ledger: one SQLite row per request (the fields of ``RequestRecord``).

Safe with several worker processes on one file: WAL journal, ``busy_timeout``, one short
``BEGIN IMMEDIATE`` transaction per batch. ``append`` never touches the disk: it queues the row
for a background writer thread that, every ``commit_window_s`` (0.1 s) while rows arrive,
commits whatever has queued up as one batch, so the event loop never waits for SQLite and a busy
proxy pays one commit per window, not per request. A committed row survives the process being
killed (WAL, ``synchronous=NORMAL``); a kill loses the rows of the last window not yet
committed, an OS crash or power cut may also lose the last commits.

Retention is bounded by age (``retention_days``) and/or row count (``max_rows``); the writer
prunes at most once a minute. Prompt text is dropped unless ``store_prompts`` is on.
Reading the ledger back (records, totals, time buckets) is router/accounting/queries.py.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import operator
import queue
import sqlite3
import threading
import time
import weakref
from dataclasses import fields
from pathlib import Path
from typing import Any

from router.accounting.gil import Yielder
from router.accounting.queries import _BOOL_IDX, _COLS, _ESC, LedgerQueries
from router.accounting.records import RequestRecord

log = logging.getLogger("tierwise.ledger")


def _sql_type(annotation: Any) -> str:
    a = str(annotation)
    return "REAL" if "float" in a else "INTEGER" if ("int" in a or "bool" in a) else "TEXT"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, "
    + ", ".join(f"{f.name} {_sql_type(f.type)}" for f in fields(RequestRecord))
    + ")"
)
_ROW_SQL = f"({', '.join('?' * len(_COLS))})"
# Rows per INSERT statement: powers of two up to this (SQLite's default cap of 32766 bound
# variables, 999 before 3.32, bounds the largest that fits; see _insert_groups). Binding a
# statement's values holds the GIL: 256 rows were ~1 ms in one stretch, which the event loop
# waited out whenever an answer came in meanwhile (bench/PROFILE.md section 8); 32 rows are
# ~0.1 ms, and between statements the writer lets a waiting loop have the GIL (gil.Yielder).
_MAX_GROUP = 32


@functools.lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    return f"INSERT INTO requests ({', '.join(_COLS)}) VALUES {', '.join([_ROW_SQL] * n)}"


def _insert_groups(n: int, largest: int) -> list[int]:
    """Split `n` rows into statements of power-of-two sizes up to `largest` (e.g. 100 ->
    64, 32, 4): a few statements per batch, and only a few distinct SQL texts to prepare."""
    out = []
    size = largest
    while n:
        while size > n:
            size //= 2
        out.append(size)
        n -= size
    return out
_values = operator.attrgetter(*_COLS)  # a record's fields in column order, in one C call
_PROMPT = _COLS.index("prompt_text")
_STOP = object()
_PRUNE_EVERY_S = 60.0



def wait_drained(q: queue.Queue[Any], timeout: float) -> bool:
    """Wait until every item put on `q` was marked done (``task_done``); False on timeout.

    ``Queue.join`` has no timeout, and a writer thread that must flush on shutdown needs one.
    """
    end = time.monotonic() + timeout
    with q.all_tasks_done:
        while q.unfinished_tasks:
            left = end - time.monotonic()
            if left <= 0:
                return False
            q.all_tasks_done.wait(left)
    return True


def _close_if_alive(ref: weakref.ReferenceType[Ledger]) -> None:
    """atexit hook: commit what a still-open ledger has queued."""
    ledger = ref()
    if ledger is not None:
        ledger.close()

class Ledger(LedgerQueries):
    """SQLite decision ledger. See the module docstring for the concurrency model."""

    def __init__(
        self,
        path: str | Path,
        retention_days: float | None = 30,
        store_prompts: bool = False,
        *,
        max_rows: int | None = None,
        busy_timeout_ms: int = 10_000,
        max_queue: int = 100_000,
        commit_window_s: float = 0.1,
    ) -> None:
        self.path = Path(path)
        self.commit_window_s = commit_window_s
        self.retention_days = retention_days
        self.store_prompts = store_prompts
        self.max_rows = max_rows
        self.busy_timeout_ms = busy_timeout_ms
        self.dropped = 0  # rows dropped because the queue was full or the write failed
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._last_prune = 0.0
        self._yielder = Yielder()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_db()
        ref = weakref.ref(self)
        atexit.register(_close_if_alive, ref)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _init_db(self) -> None:
        for attempt in range(50):  # several workers may start at once on a new file
            try:
                with self._connect() as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute(_SCHEMA)
                    conn.execute("CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts)")
                    have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
                    for f in fields(RequestRecord):  # a ledger written by an older tierwise
                        if f.name not in have:
                            conn.execute(
                                f"ALTER TABLE requests ADD COLUMN {f.name} {_sql_type(f.type)}"
                            )
                conn.close()
                return
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.05)

    # -- writing ---------------------------------------------------------------------------
    def append(self, record: RequestRecord) -> None:
        """Queue one record for the writer thread. Never blocks; drops (and counts) if full.

        Do not mutate the record afterwards: the writer reads it a little later.
        """
        self._put(record)

    def extend(self, records: list[RequestRecord]) -> None:
        """Queue several records as one item (one queue operation for the batch: what the
        accounting thread does). Same rules as `append`."""
        if records:
            self._put(records)

    def _put(self, item: RequestRecord | list[RequestRecord]) -> None:
        if self._closed:
            raise RuntimeError(f"ledger {self.path} is closed")
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._writer, name="tierwise-ledger", daemon=True
                    )
                    self._thread.start()
        try:
            self._q.put_nowait(item)  # converted to rows by the writer thread
        except queue.Full:
            self.dropped += len(item) if isinstance(item, list) else 1

    def _row(self, r: RequestRecord) -> tuple[Any, ...]:
        row = list(_values(r))
        row[_ESC] = json.dumps(r.escalations) if r.escalations else "[]"
        for i in _BOOL_IDX:
            row[i] = int(row[i])
        if not self.store_prompts:
            row[_PROMPT] = None
        return tuple(row)

    def _writer(self) -> None:
        conn = self._connect()
        try:
            while True:
                batch = [self._q.get()]
                # Let rows gather for a moment: one commit (and one wake-up of this thread) per
                # window rather than per request is what keeps the ledger's CPU per request low.
                if self.commit_window_s and not self._closed:
                    time.sleep(self.commit_window_s)
                while len(batch) < 5000:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in batch)
                records = [r for item in batch if item is not _STOP
                           for r in (item if isinstance(item, list) else (item,))]
                n = len(records)
                try:
                    rows = [self._row(r) for r in records]
                    if rows:
                        self._write(conn, rows)
                    if time.monotonic() - self._last_prune > _PRUNE_EVERY_S:
                        self._prune(conn)
                except Exception:
                    log.exception("ledger %s: write of %d rows failed", self.path, n)
                    self.dropped += n
                finally:
                    for _ in batch:
                        self._q.task_done()
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        # Many rows per INSERT statement, not executemany's one statement per row: sqlite3
        # lets go of the GIL around every statement, and each of those hand-offs with the
        # event loop's thread cost the proxy more than the row itself (bench/PROFILE.md 7).
        variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        largest = _MAX_GROUP
        yielder = self._yielder
        while largest > 1 and largest * len(_COLS) > variables:
            largest //= 2
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    start = 0
                    yielder.start()
                    for size in _insert_groups(len(rows), largest):
                        if start:
                            yielder.tick()
                        group = rows[start:start + size]
                        start += size
                        conn.execute(_insert_sql(size), [v for row in group for v in row])
                    conn.execute("COMMIT")
                    return
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _prune(self, conn: sqlite3.Connection, now: float | None = None) -> int:
        self._last_prune = time.monotonic()
        n = 0
        if self.retention_days:
            cutoff = (time.time() if now is None else now) - self.retention_days * 86400
            n += conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount
        if self.max_rows is not None:
            n += conn.execute(
                "DELETE FROM requests WHERE id <= "
                "(SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (int(self.max_rows),),
            ).rowcount
        return n

    def prune(self, now: float | None = None) -> int:
        """Apply retention now (the writer also does it once a minute); returns rows deleted."""
        self.flush()
        conn = self._connect()
        try:
            return self._prune(conn, now)
        finally:
            conn.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until this process's queued rows are committed; False on timeout."""
        return wait_drained(self._q, timeout)

    def close(self) -> None:
        """Commit what is queued and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout=30)
