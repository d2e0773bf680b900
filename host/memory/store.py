"""Temporal-signature memory (the manifest's "Memory and Persistence"), stored in SQLite.

No pickle: rows hold numbers, JSON text and little-endian float64 vectors (numpy .tobytes()).

Public API
----------
    mem = Memory(path, retention=7*86400, max_rows=2_000_000, flush_rows=2000, flush_s=0.5, timeout=5.0,
                 enabled=("temporal_signatures", "coherence_history", "witness_logs", "mesh_sync"))
    mem = Memory.from_config(cfg)              # memory.* keys; path = cfg.memory_path()
    Memory.open_readonly(path)                 # for the CLI; MemoryStoreError if missing/corrupt
    writes (buffered, committed by flush() or automatically every flush_rows rows / flush_s s):
      mem.snapshot(device_id, t, windows, boot_id=None, threat=None)
          windows: list of dicts (window, T_hat, C, coverage, fill, ready, beats, seconds,
          last_beat), e.g. Master.windows(device); stores one phase_snapshots row per window
          (T_hat and C NULL while the window does not exist: ready false) and one signature
          [C per window (NaN while not ready), threat] for similarity search
          (host/memory/signature.py)
      mem.snapshot_many(t, q, boot_ids=None, select=None, threat=None)
                                               every stream of a Master query (query_all, or
                                               query_windows with the Emissary window) at once
      mem.coherence(device_id, t, kind, c, window=None, coverage=None, boot_id=None, T_hat=None,
                    delta_phase=None, flags=None, device_c=None, extra=None, fill=None)
          kind: "master" (T_hat of that window), "emissary" (T_hat of the Emissary window,
          device_c = the device's own Q16 value / 65536), "sync" (T_hat = T_sync, delta_phase,
          flags: 1 coherent | 2 collapsed); c None while the window does not exist (fill below
          90 %) or the sync layer did not evaluate; fill: the window's fill (core/master.py);
          extra: optional JSON-able dict
      mem.coherence_rows(rows)   bulk: tuples (t, device_id, boot_id, kind, window, c, coverage,
                                 fill, t_re, t_im, delta_phase, flags, device_c,
                                 extra_json_or_None)
      mem.witness(record)                      a witnessing record dict (layer, kind, t, device_id, ...)
      mem.mesh_state(t, peer, T_hat, weight=None, device_id=None, extra=None)
      mem.table_rows("telemetry"|"heartbeats", rows, t)   bulk rows (host/memory/telemetry.py)
      mem.flush(); mem.prune(now=None) -> rows deleted; mem.close()
      mem.start_writer()     commits on a writer thread of the store's own from then on (the
                             coordinator's): the caller of a write never waits for SQLite,
                             unless MAX_PENDING x flush_rows rows are pending
    reads (flush first):
      mem.query(table, device_id=None, since=None, until=None, limit=1000, layer=None, kind=None)
          table in TABLES; rows as dicts, oldest first
      mem.reconstruct(device_id, t) -> dict or None: the coherence state at time t = the nearest
          phase snapshot at or before t (every window: T_hat, C = |T_hat|^2, coverage, ...), the
          latest coherence rows (master per window, emissary, sync) at or before t, and the age
      mem.similar(vector=None, device_id=None, t=None, top=5, since=None, until=None,
                  exclude_device=False) -> [ {id, t, device_id, similarity, distance, layout}, ... ]
          similarity = 1 - d of signatures of the same layout (host/memory/signature.py: C per
          window and the device's threat, RMS distance, phase-free); the query is a given vector
          (NaN = unknown component) or the signature of device_id at (or before) time t
      mem.counts() -> {table: rows}

Retention: rows older than `retention` seconds (relative to the newest write time, or `now`)
are deleted (rows are appended in time order, so the cut is found by binary search over ids), and each table keeps at most `max_rows` rows (oldest deleted first); prune() runs
after every flush that crossed 10 % of max_rows or a minute of wall time, so the file stays
bounded (about 150 bytes per snapshot row; ~ max_rows x 4 tables at worst).
"""
import json
import math
import os
import sqlite3
import threading
import time

import numpy as np

from becomingone.memory import signature as _sig
from becomingone.memory import telemetry as _th
from becomingone.memory.queries import (TABLES, MemoryReads,  # noqa: F401 (re-exported)
                                        MemoryStoreError)

KINDS = ("temporal_signatures", "coherence_history", "witness_logs", "mesh_sync", "telemetry")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS phase_snapshots (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL, boot_id INTEGER,
  window REAL NOT NULL, t_re REAL, t_im REAL, c REAL,
  coverage REAL, fill REAL, beats INTEGER, seconds REAL, last_beat INTEGER);
CREATE INDEX IF NOT EXISTS phase_snapshots_dt ON phase_snapshots(device_id, t);
CREATE TABLE IF NOT EXISTS signatures (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL, boot_id INTEGER,
  dim INTEGER NOT NULL, layout TEXT NOT NULL, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS signatures_dt ON signatures(device_id, t);
CREATE TABLE IF NOT EXISTS coherence_history (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL, boot_id INTEGER,
  kind TEXT NOT NULL, window REAL, c REAL, coverage REAL, fill REAL, t_re REAL, t_im REAL,
  delta_phase REAL, flags INTEGER, device_c REAL, extra TEXT);
CREATE INDEX IF NOT EXISTS coherence_history_dt ON coherence_history(device_id, t);
CREATE TABLE IF NOT EXISTS witness_log (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, layer TEXT NOT NULL, kind TEXT NOT NULL,
  device_id INTEGER, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS witness_log_dt ON witness_log(device_id, t);
CREATE TABLE IF NOT EXISTS mesh_sync (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, peer TEXT NOT NULL, device_id INTEGER,
  t_re REAL NOT NULL, t_im REAL NOT NULL, weight REAL, extra TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + _th.SCHEMA_SQL
FORMAT_VERSION = "3"
# with a writer thread (start_writer), a caller flushes itself only beyond MAX_PENDING x flush_rows
# pending rows: the writer is behind; the wait bounds the memory the pending rows hold
MAX_PENDING = 50
# format 2 -> 3 (issue 11): windows carry their fill and have no C (NULL) until they exist, and
# signatures are [C per window, threat] with a layout (host/memory/signature.py). The two
# tables are rebuilt with their rows (fill NULL: not recorded then); format 2's signatures
# ([Re, Im T_hat] per window, compared by angle) mean something else and are dropped.
_REBUILT = {
    "phase_snapshots": "id, t, device_id, boot_id, window, t_re, t_im, c, coverage, beats, seconds, "
                       "last_beat",
    "coherence_history": "id, t, device_id, boot_id, kind, window, c, coverage, t_re, t_im, "
                         "delta_phase, flags, device_c, extra",
}


def _migrate_2_to_3(db):
    with db:
        for table, cols in _REBUILT.items():
            db.execute("ALTER TABLE %s RENAME TO %s_v2" % (table, table))
            db.execute("DROP INDEX IF EXISTS %s_dt" % table)
        db.execute("DROP TABLE signatures")
        for stmt in SCHEMA_SQL.split(";"):
            if stmt.strip():
                db.execute(stmt)
        for table, cols in _REBUILT.items():
            db.execute("INSERT INTO %s (%s) SELECT %s FROM %s_v2" % (table, cols, cols, table))
            db.execute("DROP TABLE %s_v2" % table)
        db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT_VERSION,))



def _json(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=_jdefault, allow_nan=False)


def _jdefault(o):
    if isinstance(o, complex):
        return [o.real, o.imag]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError("not JSON serialisable: %r" % (type(o).__name__,))


def _none(v):
    """NaN (a window that does not exist yet) -> NULL."""
    return None if v != v else v


def _clean(v):
    """NaN/inf are not valid JSON: store them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, complex):
        return [_clean(v.real), _clean(v.imag)]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


class Memory(MemoryReads):
    """The temporal-signature memory (module docstring): owns the SQLite connection, the
    write buffers and their flush and prune schedule; reads are MemoryReads
    (memory/queries.py). Raises MemoryStoreError for a database that cannot be opened, read
    or written (or is read-only), ValueError for an unknown kind."""

    SIMILAR_CHUNK = 65536        # signature rows scored per numpy batch in similar()

    def __init__(self, path, retention=7 * 86400.0, max_rows=2000000, flush_rows=2000, flush_s=0.5,
                 enabled=KINDS, readonly=False, timeout=5.0):
        self.path = path
        self.retention = float(retention)
        self.max_rows = int(max_rows)
        self.flush_rows = int(flush_rows)
        self.flush_s = float(flush_s)
        self.enabled = set(enabled)
        for k in self.enabled:
            if k not in KINDS:
                raise ValueError("unknown memory kind %r (allowed: %s)" % (k, ", ".join(KINDS)))
        self.readonly = readonly
        self.timeout = float(timeout)
        self._lock = threading.RLock()          # the pending rows and counters (held briefly)
        self._write_lock = threading.RLock()    # one writer of the file at a time (flush, prune)
        self._writer = None                     # the writer thread (start_writer), if any
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.write_errors = 0
        self.last_error = None
        self._pending = {t: [] for t in TABLES}
        self._npending = 0
        self._last_flush = time.monotonic()
        self._last_prune = time.monotonic()
        self._since_prune = 0
        self._newest_t = 0.0
        self.written = {t: 0 for t in TABLES}
        self.flush_seconds = 0.0
        self._db = self._open()

    def _open(self):
        try:
            if self.readonly:
                if not os.path.exists(self.path):
                    raise MemoryStoreError("no memory database at %s (run the coordinator first, or "
                                       "pass --data DIR of a coordinator's data folder)" % self.path)
                db = sqlite3.connect("file:%s?mode=ro" % self.path, uri=True, timeout=self.timeout,
                                     check_same_thread=False)
                cur = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                if cur is not None and cur[0] != FORMAT_VERSION:
                    raise MemoryStoreError("memory database %s has format %s; this build reads format %s "
                                           "(a coordinator of this build migrates it when it opens it: "
                                           "becomingone run --data DIR)"
                                           % (self.path, cur[0], FORMAT_VERSION))
            else:
                d = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(d, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA_SQL)
                _th.migrate(db)
                cur = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                if cur is None:
                    db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT_VERSION,))
                    db.commit()
                elif cur[0] == "2":
                    _migrate_2_to_3(db)
                elif cur[0] != FORMAT_VERSION:
                    raise MemoryStoreError("memory database %s has format %s; this build reads format %s"
                                       % (self.path, cur[0], FORMAT_VERSION))
            db.execute("SELECT count(*) FROM phase_snapshots").fetchone()
            return db
        except sqlite3.DatabaseError as e:
            raise MemoryStoreError("memory database %s cannot be used: %s" % (self.path, e)) from None

    @classmethod
    def from_config(cls, cfg, **kw):
        m = cfg.memory
        enabled = [k for k in ("temporal_signatures", "coherence_history", "witness_logs", "telemetry")
                   if getattr(m, k)] + ["mesh_sync"]
        return cls(cfg.memory_path(), retention=m.retention, max_rows=m.max_rows, enabled=enabled, **kw)

    @classmethod
    def open_readonly(cls, path):
        return cls(path, readonly=True)

    # ------------------------------------------------------------------ writes
    def _add(self, table, row, t):
        if self.readonly:
            raise MemoryStoreError("memory database %s is open read-only" % self.path)
        with self._lock:
            self._pending[table].append(row)
            self._npending += 1
            if t > self._newest_t:
                self._newest_t = t
        self._maybe_flush()

    def snapshot(self, device_id, t, windows, boot_id=None, threat=None):
        """One phase snapshot of a device: a phase_snapshots row per window (T_hat and C only
        when the window exists: `ready`, default true) and its signature (memory/signature.py)
        over these windows and `threat` (the device's, 0..1, or None)."""
        if "temporal_signatures" not in self.enabled or not windows:
            return False
        t = float(t)
        for w in windows:
            ok = w.get("ready", True)
            th = complex(w["T_hat"]) if ok else None
            c = (float(w["C"]) if w.get("C") is not None else abs(th) ** 2) if ok else None
            self._add("phase_snapshots", (t, int(device_id), boot_id, float(w["window"]),
                                          None if th is None else th.real,
                                          None if th is None else th.imag, c, w.get("coverage"),
                                          w.get("fill"), w.get("beats"), w.get("seconds"),
                                          w.get("last_beat")), t)
        v = _sig.signature([dict(w, C=(w.get("C") if w.get("C") is not None else
                                      abs(complex(w["T_hat"])) ** 2)) for w in windows], threat)
        self._add("signatures", (t, int(device_id), boot_id, v.shape[0],
                                 _sig.layout_of([w["window"] for w in windows]), v.tobytes()), t)
        return True

    def snapshot_many(self, t, q, boot_ids=None, select=None, threat=None):
        """Snapshot every stream with data of a Master query result shaped (devices, windows)
        (Master.query_all(), or query_windows() with the Emissary window first) where `select`,
        a bool per device row, is true; boot_ids aligned with q's device rows; threat: {device:
        threat 0..1} (the signature's condition component; missing: unknown)."""
        if "temporal_signatures" not in self.enabled:
            return 0
        has = q["last_beat"][:, 0] >= 0
        if select is not None:
            has = has & np.asarray(select, dtype=bool)
        rows_i = np.flatnonzero(has)
        if rows_i.shape[0] == 0:
            return 0
        t = float(t)
        W = [float(w) for w in q["window"]]
        layout = _sig.layout_of(W)
        ready = q["ready"][rows_i]
        th = q["T_hat"][rows_i]
        re = np.where(ready, th.real, np.nan).tolist()
        im = np.where(ready, th.imag, np.nan).tolist()
        Cw = np.where(ready, q["C"][rows_i], np.nan)
        C = Cw.tolist()
        cov = q["coverage"][rows_i].tolist()
        fill = q["fill"][rows_i].tolist()
        beats = q["beats"][rows_i].tolist()
        secs = q["seconds"][rows_i].tolist()
        lb = q["last_beat"][rows_i].tolist()
        ids = q["device_id"][rows_i].tolist()
        boots = [None] * len(ids) if boot_ids is None else np.asarray(boot_ids)[rows_i].tolist()
        vec = np.empty((rows_i.shape[0], len(W) + 1), dtype="<f8")
        vec[:, :-1] = Cw
        vec[:, -1] = [np.nan if (threat or {}).get(d) is None else
                      min(1.0, max(0.0, float(threat[d]))) for d in ids]
        snap, sig = [], []
        for j, d in enumerate(ids):
            b = boots[j]
            for k, w in enumerate(W):
                snap.append((t, d, b, w, _none(re[j][k]), _none(im[j][k]), _none(C[j][k]),
                             cov[j][k], fill[j][k], beats[j][k], secs[j][k], lb[j][k]))
            sig.append((t, d, b, len(W) + 1, layout, vec[j].tobytes()))
        self._bulk("phase_snapshots", snap, t)
        self._bulk("signatures", sig, t)
        return len(ids)

    def coherence(self, device_id, t, kind, c, window=None, coverage=None, boot_id=None, T_hat=None,
                  delta_phase=None, flags=None, device_c=None, extra=None, fill=None):
        """One coherence_history row; c None: the window does not exist yet (fill below
        MIN_FILL) or the sync layer did not evaluate the device."""
        if "coherence_history" not in self.enabled:
            return False
        th = None if T_hat is None else complex(T_hat)
        self._add("coherence_history", (float(t), int(device_id), boot_id, str(kind),
                                        None if window is None else float(window),
                                        None if c is None else float(c),
                                        None if coverage is None else float(coverage),
                                        None if fill is None else float(fill),
                                        None if th is None else th.real, None if th is None else th.imag,
                                        None if delta_phase is None else float(delta_phase),
                                        None if flags is None else int(flags),
                                        None if device_c is None else float(device_c),
                                        None if extra is None else _json(_clean(extra))), float(t))
        return True

    def coherence_rows(self, rows):
        """Bulk coherence rows (see the module docstring for the tuple layout)."""
        if "coherence_history" not in self.enabled or not rows:
            return 0
        self._bulk("coherence_history", rows, max(r[0] for r in rows))
        return len(rows)

    def _bulk(self, table, rows, t):
        if self.readonly:
            raise MemoryStoreError("memory database %s is open read-only" % self.path)
        with self._lock:
            self._pending[table].extend(rows)
            self._npending += len(rows)
            if t > self._newest_t:
                self._newest_t = t
        self._maybe_flush()

    def _maybe_flush(self):
        """Flush when flush_rows rows are pending or flush_s has passed: here, or on the writer
        thread when there is one (then here only beyond MAX_PENDING x flush_rows rows, when the
        writer cannot keep up: the caller waits, memory stays bounded)."""
        n = self._npending
        if n < self.flush_rows and time.monotonic() - self._last_flush < self.flush_s:
            return
        if self._writer is not None and n < MAX_PENDING * self.flush_rows:
            self._wake.set()
        else:
            self.flush()

    @property
    def pending_rows(self):
        """Rows added and not committed yet."""
        return self._npending

    def start_writer(self):
        """Commit on a thread of the store's own from now on (the coordinator's: a commit of
        thousands of rows, or a WAL checkpoint, takes tens to hundreds of ms, and SQLite runs it
        without the GIL, beside the ingest instead of in its way). Reads still flush first."""
        if self._writer is None and not self.readonly:
            self._stop.clear()
            self._writer = threading.Thread(target=self._write_loop, name="memory-writer",
                                            daemon=True)
            self._writer.start()
        return self

    def _write_loop(self):
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except MemoryStoreError as e:      # rows kept for the next try; counted
                self.write_errors += 1
                self.last_error = str(e)
                self._stop.wait(1.0)

    def table_rows(self, table, rows, t):
        """Bulk rows of the telemetry/heartbeats tables (host/memory/telemetry.py layouts)."""
        if "telemetry" not in self.enabled or not rows:
            return 0
        self._bulk(table, rows, float(t))
        return len(rows)

    def witness(self, record):
        if "witness_logs" not in self.enabled:
            return False
        t = float(record.get("t", time.time()))
        dev = record.get("device_id")
        self._add("witness_log", (t, str(record.get("layer", "")), str(record.get("kind", "")),
                                  None if dev is None else int(dev), _json(_clean(record))), t)
        return True

    def mesh_state(self, t, peer, T_hat, weight=None, device_id=None, extra=None):
        if "mesh_sync" not in self.enabled:
            return False
        th = complex(T_hat)
        self._add("mesh_sync", (float(t), str(peer), device_id, th.real, th.imag,
                                None if weight is None else float(weight),
                                None if extra is None else _json(_clean(extra))), float(t))
        return True

    _INSERT = {
        "phase_snapshots": "INSERT INTO phase_snapshots (t, device_id, boot_id, window, t_re, t_im, c, "
                           "coverage, fill, beats, seconds, last_beat) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        "signatures": "INSERT INTO signatures (t, device_id, boot_id, dim, layout, vec) "
                      "VALUES (?,?,?,?,?,?)",
        "coherence_history": "INSERT INTO coherence_history (t, device_id, boot_id, kind, window, c, "
                             "coverage, fill, t_re, t_im, delta_phase, flags, device_c, extra) "
                             "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        "witness_log": "INSERT INTO witness_log (t, layer, kind, device_id, data) VALUES (?,?,?,?,?)",
        "mesh_sync": "INSERT INTO mesh_sync (t, peer, device_id, t_re, t_im, weight, extra) "
                     "VALUES (?,?,?,?,?,?,?)",
        **_th.INSERT,
    }

    def flush(self):
        """Commit the pending rows; rows committed. Rows reach the file in the order they were
        added (one flush at a time); on a write error they stay pending (MemoryStoreError)."""
        with self._write_lock:
            with self._lock:
                self._last_flush = time.monotonic()
                if self._npending == 0 or self.readonly:
                    return 0
                pending, n = self._pending, self._npending
                self._pending = {t: [] for t in TABLES}
                self._npending = 0
            t0 = time.perf_counter()
            try:
                with self._db:
                    for table, rows in pending.items():
                        if rows:
                            self._db.executemany(self._INSERT[table], rows)
            except sqlite3.DatabaseError as e:
                with self._lock:                # not lost: first in line for the next flush
                    for table, rows in pending.items():
                        self._pending[table][:0] = rows
                    self._npending += n
                raise MemoryStoreError("memory database %s: write failed: %s" % (self.path, e)) from None
            for table, rows in pending.items():
                self.written[table] += len(rows)
            self._since_prune += n
            self.flush_seconds += time.perf_counter() - t0
            if self._since_prune >= max(1, self.max_rows // 10) or time.monotonic() - self._last_prune > 60:
                self.prune()
            return n

    def _id_before(self, table, cut):
        """Largest id whose row has t < cut, by binary search over ids (rows are appended in
        time order: the writer stamps them with the host clock), O(log n) lookups."""
        lo, hi = self._db.execute("SELECT min(id), max(id) FROM %s" % table).fetchone()
        if lo is None:
            return None
        if self._db.execute("SELECT t FROM %s WHERE id = ?" % table, (lo,)).fetchone()[0] >= cut:
            return None
        while lo < hi:                    # invariant: row `lo` exists and has t < cut
            mid = (lo + hi + 1) // 2
            r = self._db.execute("SELECT id, t FROM %s WHERE id >= ? AND id <= ? ORDER BY id LIMIT 1"
                                 % table, (mid, hi)).fetchone()
            if r is not None and r[1] < cut:
                lo = r[0]
            else:
                hi = mid - 1
        return lo

    def prune(self, now=None):
        """Delete rows older than `retention` and beyond `max_rows` per table; rows deleted.
        Age pruning finds the cut by binary search over ids (time-ordered appends), so no
        time index is needed."""
        with self._write_lock:
            self._last_prune = time.monotonic()
            self._since_prune = 0
            if self.readonly:
                return 0
            if now is None:
                now = self._newest_t if self._newest_t > 0 else time.time()
            cut = float(now) - self.retention
            deleted = 0
            with self._db:
                for table in TABLES:
                    last_old = self._id_before(table, cut)
                    if last_old is not None:
                        deleted += self._db.execute("DELETE FROM %s WHERE id <= ?" % table,
                                                    (last_old,)).rowcount
                    top = self._db.execute("SELECT max(id) FROM %s" % table).fetchone()[0]
                    if top is not None and top > self.max_rows:
                        deleted += self._db.execute("DELETE FROM %s WHERE id <= ?" % table,
                                                    (top - self.max_rows,)).rowcount
            return deleted

    def close(self):
        w = self._writer
        if w is not None:
            self._stop.set()
            self._wake.set()
            w.join()
            self._writer = None
        with self._write_lock:
            if self._db is None:
                return
            try:
                self.flush()
            finally:
                self._db.close()
                self._db = None
