"""SQLite access for the ledger: schema, pragmas and turning SQLite failures into clear
LedgerErrors (corrupted file, locked database) instead of tracebacks."""
import contextlib
import os
import sqlite3

from becomingone.errors import LedgerError, UserError

FORMAT = 2            # on-disk format written by this version (meta key 'format'; absent = 1)
NODE_LEVEL = 2        # new files store tree nodes of level >= 2 only (meta key 'node_level';
                      # a format-2 file without that row has 3, format 1 has 1)

MMAP_SIZE = 1 << 30    # bytes of the database file read through mmap (address space only)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # one row per entry; prev and hash are the raw 32 bytes of the hex strings that are hashed
    "CREATE TABLE IF NOT EXISTS entries(idx INTEGER PRIMARY KEY, ts REAL NOT NULL, "
    "data TEXT NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL)",
    # complete subtrees of level >= NODE_LEVEL: subtree (level, k) is stored at pos = (k+1) << level,
    # the tree size at which it completed, so a scan in key order is the order of creation
    "CREATE TABLE IF NOT EXISTS nodes(pos INTEGER NOT NULL, level INTEGER NOT NULL, "
    "hash BLOB NOT NULL, PRIMARY KEY(pos, level)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS checkpoints(size INTEGER PRIMARY KEY, timestamp_ms INTEGER NOT NULL, "
    "root BLOB NOT NULL, note TEXT NOT NULL)",
    # witnesses' cosignatures of stored checkpoints (docs/LEDGER.md §11): one signature line each
    "CREATE TABLE IF NOT EXISTS cosignatures(size INTEGER NOT NULL, name TEXT NOT NULL, "
    "timestamp INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY(size, name))",
)


class LedgerCorrupt(LedgerError):
    """The ledger file is damaged or not a ledger (the message names the file and what to do)."""


class LedgerLocked(LedgerError):
    """Another process holds the ledger (the message names the file)."""


def translate(path, e):
    """A LedgerError for an sqlite3 error raised while using the ledger at `path`."""
    msg = str(e)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return LedgerLocked("ledger database %s is locked by another process (%s); stop the other "
                            "writer (e.g. a running `becomingone run`) or retry later" % (path, msg))
    if isinstance(e, sqlite3.DatabaseError) and ("not a database" in low or "malformed" in low
                                                 or "corrupt" in low or "no such table" in low
                                                 or "disk i/o" in low):
        return LedgerCorrupt("ledger database %s is corrupted or not a ledger (%s); restore it from "
                             "a backup or an export (`becomingone ledger export`), or move it away "
                             "to start a new ledger" % (path, msg))
    if "readonly" in low or "unable to open" in low or "permission" in low:
        return LedgerError("cannot open ledger database %s (%s); check that the folder exists and "
                           "is writable" % (path, msg))
    return LedgerError("ledger database %s: %s" % (path, msg))


@contextlib.contextmanager
def guarded(path):
    try:
        yield
    except sqlite3.Error as e:
        raise translate(path, e) from None


SYNCHRONOUS = ("FULL", "NORMAL")


def connect(path, readonly=False, busy_timeout=5.0, synchronous="FULL"):
    """Open the ledger database in WAL mode. synchronous="FULL" (default): a commit has fsynced
    the WAL when it returns (survives power loss); "NORMAL": a commit survives a crash or kill
    of the process, not a power loss or OS crash (the WAL is fsynced at checkpoints only)."""
    if synchronous not in SYNCHRONOUS:
        raise UserError("ledger synchronous must be one of %s, got %r" % (", ".join(SYNCHRONOUS), synchronous))
    with guarded(path):
        if readonly:
            if not os.path.exists(path):
                raise LedgerError("no ledger database at %s (start the coordinator or pass --db/--data)" % path)
            con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=busy_timeout,
                                  isolation_level=None, check_same_thread=False)
        else:
            d = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(d):
                raise LedgerError("folder %s of ledger database %s does not exist" % (d, path))
            con = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                  check_same_thread=False)
        try:
            con.execute("PRAGMA busy_timeout=%d" % int(busy_timeout * 1000))
            # reads through a memory map (no read() copy per page: ~25% faster random proofs);
            # writes still go through the WAL, so durability is unchanged
            con.execute("PRAGMA mmap_size=%d" % MMAP_SIZE)
            if not readonly:
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise LedgerError("ledger database %s could not switch to WAL mode (got %s)" % (path, mode))
                con.execute("PRAGMA synchronous=%s" % synchronous)
            # touch the schema: fails here on a corrupted file or a file that is not a database
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not readonly:
                if tables and "entries" not in tables:
                    raise LedgerCorrupt("%s is an SQLite database but not a ledger (tables: %s); pass "
                                        "the ledger's file" % (path, ", ".join(sorted(tables))))
                for stmt in SCHEMA:
                    con.execute(stmt)
                if not tables:
                    con.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                                    [("format", str(FORMAT)), ("node_level", str(NODE_LEVEL))])
            elif "entries" not in tables or "nodes" not in tables or "meta" not in tables:
                raise LedgerCorrupt("%s is not a ledger database (no entries/nodes/meta tables)" % path)
            fmt = format_of(con)[0]
            if fmt > FORMAT:
                raise LedgerError("ledger database %s has on-disk format %d, newer than this becomingone "
                                  "reads (formats 1..%d); use a newer becomingone" % (path, fmt, FORMAT))
            if fmt < FORMAT and not readonly:
                _upgrade_v1(con)
        except BaseException:
            con.close()
            raise
        return con


def format_of(con):
    """(format, node_level) of an open ledger database: stored tree nodes are those of level
    >= node_level. Format 1 files have no 'format' row (node level 1)."""
    meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('format', 'node_level')"))
    try:
        fmt = int(meta.get("format", 1))
        level = 1 if fmt < 2 else int(meta.get("node_level", 3))
    except ValueError:
        raise sqlite3.DatabaseError("malformed meta rows %r" % (meta,)) from None
    if not 1 <= level <= 8:
        raise sqlite3.DatabaseError("malformed meta row node_level=%r" % (level,))
    return fmt, level


def _upgrade_v1(con):
    """Format 1 -> 2 in one transaction: drop the stored nodes of levels below NODE_LEVEL (they
    are recomputed from the entry hashes); entries, hashes and checkpoints are untouched."""
    con.execute("BEGIN IMMEDIATE")
    try:
        if format_of(con)[0] < FORMAT:
            con.execute("DELETE FROM nodes WHERE level < ?", (NODE_LEVEL,))
            con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                            [("format", str(FORMAT)), ("node_level", str(NODE_LEVEL))])
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


INSERT_CHUNK = 2048   # rows per multi-row INSERT statement


def insert_rows(con, table, args, width):
    """INSERT rows given FLAT in `args` (width values per row) into `table` ("name(col, ...)")
    with a few multi-row statements instead of executemany: every statement step releases the
    GIL, and while another thread runs Python, getting it back can take up to the switch
    interval (5 ms), so executemany (one step per row) slows to ~40 us/row next to a busy
    thread. Full chunks are 2048 rows; the rest goes in one statement of the next power of two
    rows, padded with NULL rows that the WHERE drops: at most 12 statement texts, compiled once.
    (4096-row statements, the most SQLite's 32766 variables allow for 5 columns, measured no
    faster.)"""
    n = len(args) // width
    one = "(" + ",".join("?" * width) + ")"
    a = 0
    while a < n:
        k = min(INSERT_CHUNK, n - a)
        size = 1 << (k - 1).bit_length()
        part = args[a * width:(a + k) * width]
        if size > k:
            part.extend([None] * ((size - k) * width))
        con.execute("INSERT INTO %s SELECT * FROM (VALUES %s) WHERE column1 IS NOT NULL"
                    % (table, ",".join([one] * size)), part)
        a += k
