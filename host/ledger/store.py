"""The Ledger: append-only SQLite store with a stored Merkle tree, proofs and checkpoints.
See the package docstring (host/ledger/__init__.py) for the API and thread-safety rules."""
import collections
import os
import sqlite3
import threading
import time

from becomingone.errors import UserError
from becomingone.ledger import canonical, checkpoint as ckpt, hashing, kinds, merkle, tree
from becomingone.ledger.db import LedgerError, connect, format_of, guarded, insert_rows, translate
from becomingone.ledger.entry import Entry  # noqa: F401  (re-exported)
from becomingone.ledger.export import export_ledger
from becomingone.ledger.future import LedgerFuture, resolve_all
from becomingone.ledger.verify import verify_path
from becomingone.util.atomic import atomic_write

_now = time.time
_new_future = object.__new__   # a LedgerFuture without a Python-level __init__ call

GENESIS_ORIGIN = "becomingone.ledger"
CACHE_MAX = 300000    # stored nodes (immutable) are cached in memory once read, at most this many
                      # (about 40 MB: all stored nodes of a 1M-entry tree); emptied when full
LEDGER_VERSION = 1    # genesis "version" (the hashed data format; the on-disk format is db.FORMAT)


class Ledger:
    """Open (creating on first use, with its genesis entry) the ledger at `path`.

    checkpoint_every: sign a checkpoint automatically each time the size crosses a multiple of
    this many entries (None or 0: only on demand). key_folder: where the Ed25519 key lives;
    default: <key_dir>/<origin hex> outside the data folder (key_dir: ledger.key_dir, else
    checkpoint.default_key_dir()), or beside the database for a ledger whose key is already
    there (docs/LEDGER.md §6). The group-commit writer commits everything queued, up
    to max_batch entries per transaction; group_commit_ms > 0 makes it wait up to that long
    after the first queued entry for more (bigger batches, higher latency). synchronous: "FULL"
    (default, a commit survives power loss) or "NORMAL" (survives a crash/kill of the process,
    not a power loss), see docs/LEDGER.md §9."""

    def __init__(self, path, checkpoint_every=None, key_folder=None, busy_timeout=5.0,
                 max_batch=8192, group_commit_ms=0.0, synchronous="FULL", key_dir=None):
        if checkpoint_every is not None and (type(checkpoint_every) is not int or checkpoint_every < 0):
            raise UserError("checkpoint_every must be an integer >= 0 or None, got %r" % (checkpoint_every,))
        if type(group_commit_ms) not in (int, float) or not 0 <= group_commit_ms <= 10000:
            raise UserError("group_commit_ms must be a number of milliseconds in 0..10000, got %r" % (group_commit_ms,))
        if type(max_batch) is not int or max_batch < 1:
            raise UserError("max_batch must be an integer >= 1, got %r" % (max_batch,))
        self.linger = group_commit_ms / 1000.0
        self.path = os.path.abspath(path)
        self._key_folder = key_folder
        self.key_dir = key_dir
        self.checkpoint_every = checkpoint_every
        self.max_batch = max_batch
        self._lock = threading.RLock()
        self.synchronous = synchronous
        self._con = connect(self.path, busy_timeout=busy_timeout, synchronous=synchronous)
        self._key = None
        self._node_cache = {}
        self._suffix_memo = (None, None)
        self._closed = False
        self.origin = None
        self._writer = None
        self._queue = collections.deque()
        self._qlock = threading.Lock()
        self._cv = threading.Condition(self._qlock)
        try:
            with guarded(self.path):
                self._node_level = format_of(self._con)[1]   # stored tree nodes: level >= this
                self._load_state()
        except BaseException:
            self._con.close()
            raise

    open = classmethod(lambda cls, path, **kw: cls(path, **kw))

    # ---------------------------------------------------------------- state
    def _load_state(self):
        con = self._con
        row = con.execute("SELECT idx, hash FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
        if row is None:
            self._size, self._last = 0, bytes(32)
            self._frontier = merkle.Frontier()
            data = {"kind": "genesis", "origin": GENESIS_ORIGIN, "version": LEDGER_VERSION}
            self._write([(canonical.dumps(data), time.time())])
        else:
            self._size, self._last = row[0] + 1, row[1]
            plan = merkle.decompose(0, self._size)
            got = self._fetch(plan)[0]
            self._frontier = merkle.Frontier(self._size, [(lv, got[(lv, k)]) for lv, k in plan])
        g = con.execute("SELECT hash FROM entries WHERE idx=0").fetchone()
        if g is None:
            raise translate(self.path, sqlite3.DatabaseError("malformed: no genesis entry"))
        self.origin = "%s/%s" % (GENESIS_ORIGIN, g[0].hex()[:16])

    @property
    def size(self):
        return self._size

    def __len__(self):
        return self._size

    # ---------------------------------------------------------------- appends
    @staticmethod
    def _prepare(kind, data, timestamp):
        d = kinds.build(kind, data)
        try:
            text = canonical.dumps(d)
            ts = canonical.check_timestamp(time.time() if timestamp is None else timestamp)
        except canonical.CanonicalError as e:
            raise kinds.KindError("ledger %s entry: %s" % (kind, e)) from None
        return text, ts, d

    def _write(self, prepared):
        """Append prepared (data_json, ts, ...) items in ONE transaction; returns (first index,
        [hash hex]) after the commit is durable (hash hex of entry i-1 first, then one per item).
        In-memory state changes only after a successful commit."""
        with self._lock:
            if self._closed:
                raise LedgerError("ledger %s is closed" % self.path)
            n0 = n = self._size
            prev = self._last
            ph = prev.hex()
            hs = hashing.chain(n0, prev, prepared)
            n = n0 + len(hs)
            args = [None] * (5 * len(hs))         # rows (idx, ts, data, prev, hash), flat
            args[0::5] = range(n0, n)
            args[1::5] = [p[1] for p in prepared]
            args[2::5] = [p[0] for p in prepared]
            args[3::5] = [prev] + hs[:-1]
            args[4::5] = hs
            leaves = hashing.leaf_hashes(hs)
            hexes = [ph] + [h.hex() for h in hs]
            prev = hs[-1] if hs else prev
            fr = self._frontier.copy()
            nodes = fr.extend(leaves, self._node_level)
            con = self._con
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    top = con.execute("SELECT max(idx) FROM entries").fetchone()[0]
                    if (top is None and n0 != 0) or (top is not None and top != n0 - 1):
                        raise LedgerError("ledger %s was changed by another process (size %s, expected "
                                          "%d); only one writer may use a ledger"
                                          % (self.path, 0 if top is None else top + 1, n0))
                    insert_rows(con, "entries(idx, ts, data, prev, hash)", args, 5)
                    insert_rows(con, "nodes(pos, level, hash)", [v for row in nodes for v in row], 3)
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise translate(self.path, e) from None
            self._size, self._last, self._frontier = n, prev, fr
            ce = self.checkpoint_every
            if ce and self.origin and n0 // ce != n // ce:
                self.checkpoint()
            return n0, hexes

    def _commit(self, prepared):
        """Append prepared (data_json, ts, data) items in ONE transaction; -> [Entry] once durable."""
        n0, hexes = self._write(prepared)
        return [Entry(n0 + i, p[1], p[0], hexes[i], hexes[i + 1], p[2]) for i, p in enumerate(prepared)]

    def append(self, kind, data, timestamp=None):
        """Append one entry; returns its Entry once committed (durable)."""
        return self._commit([self._prepare(kind, data, timestamp)])[0]

    def append_many(self, items, timestamp=None):
        """Append [(kind, data), ...] in one transaction (group commit); -> [Entry]."""
        prepared = [self._prepare(k, d, timestamp) for k, d in items]
        return self._commit(prepared) if prepared else []

    def submit(self, kind, data, timestamp=None, callback=None):
        """Queue an entry for the group-commit writer thread. Returns a
        concurrent.futures.Future resolved with the Entry only after its batch committed (or
        with the error). callback(entry, error) runs in the writer thread after the commit.
        Bad kind/data raise here, at once. From asyncio: `await asyncio.wrap_future(fut)`."""
        d = kinds.build(kind, data)
        try:
            text = canonical.dumps(d)
            # time.time() is always a finite, non-zero float: only a caller's value is checked
            ts = _now() if timestamp is None else canonical.check_timestamp(timestamp)
        except canonical.CanonicalError as e:
            raise kinds.KindError("ledger %s entry: %s" % (kind, e)) from None
        fut = _new_future(LedgerFuture)   # its attributes are class defaults until resolved
        q = self._queue
        with self._qlock:
            if self._closed:
                raise LedgerError("ledger %s is closed" % self.path)
            if self._writer is None:
                self._writer = threading.Thread(target=self._writer_loop, name="ledger-writer", daemon=True)
                self._writer.start()
            # the data dict is kept only for a callback's Entry (a future's Entry.data is parsed
            # from the text when read: most futures are never read, and fewer live objects)
            q.append((text, ts, fut, callback, None if callback is None else d))
            if len(q) == 1 or len(q) >= self.max_batch:
                self._cv.notify()  # the writer only sleeps on an empty queue or while lingering
        return fut

    def _writer_loop(self):
        q = self._queue
        while True:
            with self._cv:
                while not q and not self._closed:
                    self._cv.wait()
                if not q and self._closed:
                    return
                if self.linger and len(q) < self.max_batch and not self._closed:
                    end = time.monotonic() + self.linger
                    while len(q) < self.max_batch and not self._closed:
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                batch = [q.popleft() for _ in range(min(len(q), self.max_batch))]
            try:
                n, hexes = self._write(batch)
                err = None
            except BaseException as e:  # the futures carry the error; the writer keeps going
                n, hexes, err = None, None, e
            # a future gets the plain tuple (index, ts, text, prev hex, hash hex): LedgerFuture
            # makes the Entry when result() is first called (most futures are never read)
            if err is None:
                results = [(n + i, item[1], item[0], hexes[i], hexes[i + 1]) for i, item in enumerate(batch)]
            else:
                results = [None] * len(batch)
            resolve_all([item[2] for item in batch], results, err)
            for item, r in zip(batch, results):
                cb = item[3]
                if cb is not None:
                    try:
                        cb(None if r is None else Entry(*r, item[4]), err)
                    except Exception:
                        pass

    def flush(self, timeout=None):
        """Wait until every submitted entry is committed (or failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cv:
                pending = bool(self._queue)
            if not pending:
                break
            time.sleep(0.0005)
            if deadline is not None and time.monotonic() > deadline:
                return False
        with self._lock:  # the batch being committed, if any, holds the lock
            return True

    def close(self):
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        if self._writer is not None:
            self._writer.join()
        with self._lock:
            self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- reads
    def get(self, index):
        with self._lock, guarded(self.path):
            r = self._con.execute("SELECT idx, ts, data, prev, hash FROM entries WHERE idx=?",
                                  (index,)).fetchone()
        if r is None:
            raise UserError("no entry %d (ledger size %d; indices 0..%d)" % (index, self._size, self._size - 1))
        return Entry(r[0], r[1], r[2], r[3].hex(), r[4].hex())

    def entries(self, start=0, stop=None):
        """Entries with start <= index < stop, in order (reads in chunks)."""
        stop = self._size if stop is None else min(stop, self._size)
        i = max(0, start)
        while i < stop:
            j = min(stop, i + 4096)
            with self._lock, guarded(self.path):
                rows = self._con.execute("SELECT idx, ts, data, prev, hash FROM entries WHERE idx>=? "
                                         "AND idx<? ORDER BY idx", (i, j)).fetchall()
            for r in rows:
                yield Entry(r[0], r[1], r[2], r[3].hex(), r[4].hex())
            i = j

    def _check_size(self, size, what="tree size"):
        if size is None:
            return self._size
        if type(size) is not int or not 0 <= size <= self._size:
            raise UserError("%s %r out of range (allowed: 0..%d)" % (what, size, self._size))
        return size

    def _fetch(self, coords, entries=()):
        """Hashes of complete subtrees `coords` [(level, k)] and raw entry hashes of `entries`,
        in ONE query: -> ({(level, k): hash}, {index: entry hash bytes})."""
        cache = self._node_cache
        if len(cache) >= CACHE_MAX:
            cache.clear()
        return tree.fetch(self._con, coords, entries, self._node_level, cache, "ledger %s" % self.path)

    def _suffixes(self):
        """{start: MTH(D[start:size])} for the subtree boundaries of the current size (from the
        in-memory frontier; memoised until the next append). start 0 gives the root."""
        return self._edge()[0]

    def _edge(self):
        """(suffix folds as in _suffixes, [(start, level, hash)] of the frontier's perfect
        subtrees left to right) for the current size, memoised until the next append."""
        size, memo = self._suffix_memo
        if size != self._size:
            st = self._frontier.stack
            subs, off = [], 0
            for lv, h in st:
                subs.append((off, lv, h))
                off += 1 << lv
            folds, r = {}, None
            for a, _lv, h in reversed(subs):
                r = h if r is None else merkle.node_hash(h, r)
                folds[a] = r
            memo = (folds, subs)
            self._suffix_memo = (self._size, memo)
        return memo

    def _current_path(self, m):
        """RFC 9162 PATH(m, D[0:size]) for the current size: m lies in one perfect subtree S of
        the frontier (level top); the path is S's siblings (lv, (m >> lv) ^ 1) for lv < top
        (stored nodes, or hashes over m's aligned entry block below the stored level), then
        MTH of everything right of S (a memoised suffix fold), then the frontier subtrees left
        of S, nearest first. One query. -> (path hex list, leaf hash, entry hash)."""
        folds, subs = self._edge()
        j = 0
        while m >= subs[j][0] + (1 << subs[j][1]):
            j += 1
        a, top, _h = subs[j]
        nl = self._node_level
        low = min(top, nl)                    # siblings below the stored level: from the block
        cache = self._node_cache
        if len(cache) >= CACHE_MAX:
            cache.clear()
        sib, args = [None] * top, []
        for lv in range(low, top):
            c = (lv, (m >> lv) ^ 1)
            h = cache.get(c)
            if h is None:
                args.append(((c[1] + 1) << lv))
                args.append(lv)
            else:
                sib[lv] = h
        b0 = (m >> low) << low
        nterms = len(args) >> 1
        args.append(b0)
        args.append(b0 + (1 << low))
        block = {}
        for pos, lv, h in self._con.execute(tree._sql(nterms, 1), args):
            if lv < 0:
                block[pos] = h
            else:
                sib[lv] = cache[(lv, (pos >> lv) - 1)] = h
        try:
            leaves = hashing.leaf_hashes([block[i] for i in range(b0, b0 + (1 << low))])
        except KeyError as e:
            raise LedgerError("ledger %s: entry %d is missing" % (self.path, e.args[0])) from None
        level, r = leaves, m - b0
        for lv in range(low):                 # the block's own levels 0..low-1
            sib[lv] = level[r ^ 1]
            level = hashing.parent_level(level)
            r >>= 1
        if None in sib:
            lv = sib.index(None)
            raise LedgerError("ledger %s: tree node (level %d, index %d) is missing; run `becomingone "
                              "ledger verify`" % (self.path, lv, (m >> lv) ^ 1))
        path = [h.hex() for h in sib]
        if j + 1 < len(subs):
            path.append(folds[a + (1 << top)].hex())
        path += [subs[i][2].hex() for i in range(j - 1, -1, -1)]
        return path, leaves[m - b0], block[m]

    def _root_of(self, size):
        if size == 0:
            return merkle.EMPTY_ROOT
        if size == self._size:
            return self._suffixes()[0]
        plan = merkle.root_plan(size)
        got = self._fetch(plan)[0]
        return merkle.fold([got[c] for c in plan])

    def root(self, size=None):
        """Merkle root (32 bytes) of the first `size` entries (default: all)."""
        with self._lock, guarded(self.path):
            return self._root_of(self._check_size(size))

    def inclusion_proof(self, index, size=None):
        """-> dict(index, tree_size, entry_hash, leaf_hash, root, path): hex strings."""
        with self._lock, guarded(self.path):
            n = self._check_size(size)
            if type(index) is not int or not 0 <= index < n:
                raise UserError("entry index %r out of range (allowed: 0..%d)" % (index, n - 1))
            if n == self._size:
                path, leaf, eh = self._current_path(index)
                return {"type": "inclusion", "index": index, "tree_size": n, "entry_hash": eh.hex(),
                        "leaf_hash": leaf.hex(), "root": self._suffixes()[0].hex(), "path": path}
            # an older size: RFC 9162 PATH(m, D[0:n]) and the root, from stored/recomputed
            # complete subtrees, one query
            plan, rplan = merkle.inclusion_plan(index, n), merkle.root_plan(n)
            got, ent = self._fetch([c for item in plan for c in item] + rplan + [(0, index)], (index,))
            path = [merkle.fold([got[c] for c in item]).hex() for item in plan]
            root = merkle.fold([got[c] for c in rplan])
        return {"type": "inclusion", "index": index, "tree_size": n, "entry_hash": ent[index].hex(),
                "leaf_hash": got[(0, index)].hex(), "root": root.hex(), "path": path}

    def consistency_proof(self, old_size, new_size=None):
        """-> dict(old_size, new_size, old_root, new_root, path): hex strings."""
        with self._lock, guarded(self.path):
            new_size = self._check_size(new_size, "new size")
            if type(old_size) is not int or not 0 <= old_size <= new_size:
                raise UserError("old size %r out of range (allowed: 0..%d)" % (old_size, new_size))
            plan = merkle.consistency_plan(old_size, new_size)
            got = self._fetch([c for item in plan for c in item])[0]
            path = [merkle.fold([got[c] for c in item]) for item in plan]
            return {"type": "consistency", "old_size": old_size, "new_size": new_size,
                    "old_root": self._root_of(old_size).hex(), "new_root": self._root_of(new_size).hex(),
                    "path": [p.hex() for p in path]}

    # ---------------------------------------------------------------- checkpoints
    @property
    def key_folder(self):
        """Where the signing key lives (docs/LEDGER.md §6)."""
        return self._key_folder or ckpt.ledger_key_folder(self.path, self.origin, self.key_dir)

    @property
    def key_in_data_folder(self):
        """True when the signing key sits beside the database (whoever can edit the ledger can
        then re-sign it: move it out, docs/LEDGER.md §12)."""
        return os.path.exists(os.path.join(os.path.dirname(self.path), ckpt.KEY_FILE))

    def _signing_key(self):
        if self._key is None:
            self._key = ckpt.load_or_create_key(self.key_folder)
            pem = ckpt.public_pem(self._key[1])
            beside = os.path.join(os.path.dirname(self.path), ckpt.PUB_FILE)
            try:                               # the public key, for readers of the data folder
                if not os.path.exists(beside) or open(beside, "rb").read() != pem:
                    with atomic_write(beside, binary=True) as f:
                        f.write(pem)
            except OSError:
                pass
        return self._key

    def signing_key(self):
        """(Ed25519 private key, public key) of this ledger, made on first use (the mesh signs
        its T_global entries and cosigns its peers' checkpoints with it)."""
        return self._signing_key()

    def public_key(self):
        """The checkpoint public key without making one: from the key folder, else the copy
        beside the database; the key is made only when none exists anywhere."""
        if self._key is not None:
            return self._key[1]
        pub = ckpt.load_public_from(self.key_folder)
        if pub is None:
            pub = ckpt.load_public_from(os.path.dirname(self.path))
        return pub if pub is not None else self._signing_key()[1]

    def public_key_pem(self):
        return ckpt.public_pem(self.public_key()).decode("ascii")

    def add_cosignature(self, size, name, line, timestamp):
        """Store a witness's cosignature line of the checkpoint of `size` (checked by the
        caller against the witness's key: host/ledger/cosigner.py)."""
        with self._lock, guarded(self.path):
            self._con.execute("INSERT OR REPLACE INTO cosignatures(size, name, timestamp, line) "
                              "VALUES (?,?,?,?)", (size, name, int(timestamp), line))

    def cosignatures(self):
        """[(size, name, timestamp, line)] of every stored cosignature."""
        with self._lock, guarded(self.path):
            return self._con.execute("SELECT size, name, timestamp, line FROM cosignatures "
                                     "ORDER BY size, name").fetchall()

    def checkpoint(self):
        """Sign and store a checkpoint of the current tree; returns the note text."""
        with self._lock:
            size, root = self._size, self._root_of(self._size)
            ts_ms = int(time.time() * 1000)
            note = ckpt.sign_note(self._signing_key()[0], self.origin, size, root, ts_ms)
            with guarded(self.path):
                self._con.execute("INSERT OR REPLACE INTO checkpoints(size, timestamp_ms, root, note) "
                                  "VALUES (?,?,?,?)", (size, ts_ms, root, note))
            return note

    def latest_checkpoint(self):
        """Note text of the newest checkpoint, or None."""
        with self._lock, guarded(self.path):
            r = self._con.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return r[0] if r else None

    def locked(self):
        """The ledger's lock, as a context manager: no append commits while it is held (a
        consistent cut for an export)."""
        return self._lock

    def signed_size(self):
        """Tree size of the newest checkpoint (0 when none was signed yet)."""
        with self._lock, guarded(self.path):
            r = self._con.execute("SELECT max(size) FROM checkpoints").fetchone()
        return r[0] or 0

    def writer_alive(self):
        """True while the ledger is open and its group-commit writer (once started) runs:
        what a readiness probe asks (/readyz)."""
        return not self._closed and (self._writer is None or self._writer.is_alive())

    def queued(self):
        """Entries submitted and not yet committed."""
        return len(self._queue)

    def checkpoints(self):
        with self._lock, guarded(self.path):
            return [r[0] for r in self._con.execute("SELECT note FROM checkpoints ORDER BY size")]

    # ---------------------------------------------------------------- whole-ledger
    def verify(self, deep=False, workers=None, progress=None):
        """Full check of chain, stored tree and checkpoints -> verify.VerifyResult."""
        return verify_path(self.path, key_folder=self._key_folder, progress=progress, deep=deep,
                           workers=workers, key_dir=self.key_dir)

    def export(self, folder):
        return export_ledger(self, folder)

    def info(self):
        cp = self.latest_checkpoint()
        return {"path": self.path, "size": self._size, "root": self.root().hex(),
                "origin": self.origin, "checkpoint_size": ckpt.parse_note(cp)["size"] if cp else None}
