"""Reads of the memory store (a mixin of host/memory/store.py's Memory): rows by table, device and
time range; the coherence state reconstructed at a time t; similarity search of signature
vectors (host/memory/signature.py: C per window and the device's threat, phase-free, compared
by a distance that keeps magnitudes). Docs: host/memory/store.py."""
import json
import math
import sqlite3

import numpy as np

from becomingone.errors import MemoryStoreError, UserError
from becomingone.memory import signature as _sig
from becomingone.memory import telemetry as _th

TABLES = ("phase_snapshots", "coherence_history", "witness_log", "mesh_sync", "signatures") + _th.TABLES


def time_range(since=None, until=None):
    """SQL conditions (joined with AND by the caller) and arguments for `t` within
    [since, until]; either may be None."""
    where, args = [], []
    if since is not None:
        where.append("t >= ?")
        args.append(float(since))
    if until is not None:
        where.append("t <= ?")
        args.append(float(until))
    return where, args


class MemoryReads:
    """The reads of the memory store, part of Memory (memory/store.py): rows, the
    reconstructed state at a time, similarity search. Raises MemoryStoreError when the
    database cannot be read, UserError for a bad table or filter."""
    def _rows(self, sql, args):
        self.flush()
        try:
            cur = self._db.execute(sql, args)
        except sqlite3.DatabaseError as e:
            raise MemoryStoreError("memory database %s: read failed: %s" % (self.path, e)) from None
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def select(self, sql, args=()):
        """The rows (tuples) of one read-only SELECT over the memory tables, after a flush
        (the charts' column reads). MemoryStoreError when the database cannot be read."""
        self.flush()
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise MemoryStoreError("memory database %s: read failed: %s" % (self.path, e)) from None

    def counts(self):
        self.flush()
        return {t: self._db.execute("SELECT count(*) FROM %s" % t).fetchone()[0] for t in TABLES}

    def query(self, table, device_id=None, since=None, until=None, limit=1000, layer=None, kind=None):
        if table not in TABLES:
            raise UserError("unknown memory table %r (allowed: %s)" % (table, ", ".join(TABLES)))
        where, args = [], []
        if device_id is not None:
            where.append("device_id = ?")
            args.append(int(device_id))
        w, a = time_range(since, until)
        where += w
        args += a
        if layer is not None:
            if table != "witness_log":
                raise UserError("--layer applies to witness_log only")
            where.append("layer = ?")
            args.append(layer)
        if kind is not None:
            if table not in ("witness_log", "coherence_history"):
                raise UserError("--kind applies to witness_log and coherence_history only")
            where.append("kind = ?")
            args.append(kind)
        order = "t DESC, id DESC"
        if device_id is None:
            # no (device, t) index to use: rows are appended in time order, so bound the ids by
            # binary search and walk the primary key (the t conditions above keep it exact)
            self.flush()
            order = "id DESC"
            if since is not None:
                b = self._id_before(table, float(since))
                if b is not None:
                    where.append("id > ?")
                    args.append(b)
            if until is not None:
                b = self._id_before(table, math.nextafter(float(until), math.inf))
                where.append("id <= ?")
                args.append(-1 if b is None else b)
        sql = "SELECT * FROM %s%s ORDER BY %s LIMIT ?" % (
            table, (" WHERE " + " AND ".join(where)) if where else "", order)
        rows = self._rows(sql, args + [int(limit)])
        rows.reverse()
        for r in rows:
            for k in ("data", "extra"):
                if r.get(k) is not None:
                    r[k] = json.loads(r[k])
            if "vec" in r:          # NaN (a component not known yet) as null
                r["vec"] = [None if x != x else x for x in np.frombuffer(r["vec"], dtype="<f8").tolist()]
            if "t_re" in r:
                re_, im_ = r.pop("t_re"), r.pop("t_im")
                r["T_hat"] = None if re_ is None else [re_, im_]
        return rows

    def reconstruct(self, device_id, t):
        """Coherence state of a device at time t (see module docstring); None if nothing at or
        before t."""
        t = float(t)
        row = self._rows("SELECT t FROM phase_snapshots WHERE device_id = ? AND t <= ? "
                         "ORDER BY t DESC LIMIT 1", (int(device_id), t))
        coh = self._rows("SELECT c.* FROM coherence_history c JOIN (SELECT kind, window, max(t) AS mt "
                         "FROM coherence_history WHERE device_id = ? AND t <= ? GROUP BY kind, window) "
                         "m ON c.kind = m.kind AND c.window IS m.window AND c.t = m.mt "
                         "WHERE c.device_id = ? ORDER BY c.kind, c.window",
                         (int(device_id), t, int(device_id)))
        if not row and not coh:
            return None
        out = dict(device_id=int(device_id), t=t, snapshot_t=None, age_s=None, boot_id=None, windows=[],
                   coherence=[])
        if row:
            st = row[0]["t"]
            ws = self._rows("SELECT * FROM phase_snapshots WHERE device_id = ? AND t = ? ORDER BY window",
                            (int(device_id), st))
            out["snapshot_t"] = st
            out["age_s"] = t - st
            out["boot_id"] = ws[0]["boot_id"] if ws else None
            out["windows"] = [dict(window=w["window"],
                                   T_hat=None if w["t_re"] is None else [w["t_re"], w["t_im"]],
                                   C=w["c"], coverage=w["coverage"], fill=w["fill"],
                                   beats=w["beats"], seconds=w["seconds"], last_beat=w["last_beat"])
                              for w in ws]
        seen = set()
        for c in coh:
            key = (c["kind"], c["window"])
            if key in seen:
                continue
            seen.add(key)
            out["coherence"].append(dict(kind=c["kind"], window=c["window"], t=c["t"], C=c["c"],
                                         coverage=c["coverage"], fill=c["fill"],
                                         T_hat=None if c["t_re"] is None else [c["t_re"], c["t_im"]],
                                         delta_phase=c["delta_phase"], flags=c["flags"],
                                         device_c=c["device_c"],
                                         extra=json.loads(c["extra"]) if c["extra"] else None))
        return out

    def signature_at(self, device_id, t=None):
        """(id, t, vector, layout) of the device's latest signature at or before t, or None."""
        args = [int(device_id)]
        sql = "SELECT id, t, vec, layout FROM signatures WHERE device_id = ?"
        if t is not None:
            sql += " AND t <= ?"
            args.append(float(t))
        r = self._rows(sql + " ORDER BY t DESC LIMIT 1", args)
        if not r:
            return None
        return r[0]["id"], r[0]["t"], np.frombuffer(r[0]["vec"], dtype="<f8"), r[0]["layout"]

    def similar(self, vector=None, device_id=None, t=None, top=5, since=None, until=None,
                exclude_device=False):
        """Nearest signatures (memory/signature.py): similarity = 1 - d over the components
        known in both, among signatures of the query's layout (a device's signature) or of its
        dimension (a given vector, whose NaN components are unknown)."""
        qid, layout = None, None
        if vector is None:
            if device_id is None:
                raise UserError("similar needs a vector or a device (and optionally a time)")
            s = self.signature_at(device_id, t)
            if s is None:
                raise UserError("device %s has no signature%s" % (
                    device_id, "" if t is None else " at or before t=%s" % t))
            qid, _qt, q, layout = s
        else:
            q = np.asarray(vector, dtype=np.float64).ravel()
            if q.shape[0] == 0 or np.any(np.isinf(q)) or not np.any(np.isfinite(q)):
                raise UserError("the query vector needs at least one known component (numbers; "
                                "nan = unknown; no inf)")
        if not np.any(np.isfinite(q)):
            raise UserError("the signature of device %s has no known component yet (its windows "
                            "are still filling)" % device_id)
        where, args = ["dim = ?"], [int(q.shape[0])]
        if layout is not None:
            where.append("layout = ?")
            args.append(layout)
        w, a = time_range(since, until)
        where += w
        args += a
        if exclude_device and device_id is not None:
            where.append("device_id != ?")
            args.append(int(device_id))
        if int(top) < 1:
            raise UserError("top must be >= 1")
        self.flush()
        try:
            cur = self._db.execute("SELECT id, t, device_id, vec, layout FROM signatures WHERE "
                                   + " AND ".join(where) + " ORDER BY id", args)
        except sqlite3.DatabaseError as e:
            raise MemoryStoreError("memory database %s: read failed: %s" % (self.path, e)) from None
        # stream in chunks, keeping the best `top` so far: memory stays O(chunk), not O(rows)
        best = []                                   # (similarity, -id, id, t, device, layout)
        while True:
            chunk = cur.fetchmany(self.SIMILAR_CHUNK)
            if not chunk:
                break
            chunk = [r for r in chunk if r[0] != qid]
            if not chunk:
                continue
            m = np.frombuffer(b"".join(r[3] for r in chunk), dtype="<f8").reshape(len(chunk), q.shape[0])
            lays = [r[4] for r in chunk]
            sim = np.empty(len(chunk))
            for lay in set(lays):            # a vector query meets every layout of its dimension
                sel = np.array([x == lay for x in lays])
                sim[sel] = _sig.similarities(q, m[sel], lay)
            ok = np.flatnonzero(np.isfinite(sim))
            if ok.shape[0] == 0:
                continue
            k = min(int(top), ok.shape[0])
            part = ok[np.argpartition(-sim[ok], k - 1)[:k]] if k < ok.shape[0] else ok
            for j in part.tolist():
                r = chunk[j]
                best.append((float(sim[j]), -r[0], r[0], r[1], r[2], r[4]))
            best.sort(reverse=True)
            del best[int(top):]
        return [dict(id=b[2], t=b[3], device_id=b[4], similarity=b[0], distance=1.0 - b[0],
                     layout=b[5]) for b in best]
