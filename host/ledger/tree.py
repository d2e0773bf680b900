"""Reads of the stored Merkle tree (docs/LEDGER.md §3, "Storage").

On-disk format 2 stores complete subtrees of level >= node_level (meta row; NODE_LEVEL = 2,
i.e. 4 leaves and up, for new files) in table `nodes(pos, level, hash)`, pos = (k+1) << level;
a smaller complete subtree (level, k) is recomputed from the raw entry hashes of entries
[k << level, (k+1) << level), read with the same query. Format 1 (older files) stored every
level >= 1. Used by the Ledger, by `ledger verify` and by the mesh replicas.
"""
from becomingone.ledger import hashing
from becomingone.ledger.db import NODE_LEVEL, LedgerError, format_of  # noqa: F401  (re-exported)


def node_rows(nodes, node_level):
    """Rows (pos, level, hash) to store for completed nodes given as (level, k, hash)
    (node_level: format_of(con)[1] of the database written)."""
    return [((k + 1) << lv, lv, h) for lv, k, h in nodes if lv >= node_level]


_SQL = {}


def _sql(nterms, nblocks):
    """Query text for nterms stored nodes and nblocks entry ranges (memoised)."""
    q = _SQL.get((nterms, nblocks))
    if q is None:
        parts = []
        if nterms:
            parts.append("SELECT pos, level, hash FROM nodes WHERE " + " OR ".join(["(pos=? AND level=?)"] * nterms))
        if nblocks:
            parts.append("SELECT idx, -1, hash FROM entries WHERE " + " OR ".join(["(idx>=? AND idx<?)"] * nblocks))
        q = _SQL[(nterms, nblocks)] = " UNION ALL ".join(parts)
    return q


def fetch(con, coords, entries=(), node_level=None, cache=None, what="ledger"):
    """Hashes of complete subtrees `coords` [(level, k)] and raw entry hashes of `entries`, in
    ONE query -> ({(level, k): hash}, {index: entry hash bytes}). Subtrees below node_level
    (level 0 = a leaf hash) are computed from the entry hashes of their aligned block of
    2^node_level entries. `cache` (a dict) supplies and keeps stored nodes (they never change).
    node_level None: read from the file. Raises LedgerError naming what is missing."""
    if node_level is None:
        node_level = format_of(con)[1]
    got, ent = {}, {}
    args, low, blocks = [], [], set()
    cget = cache.get if cache is not None else {}.get
    for c in coords:
        lv = c[0]
        if lv >= node_level:
            h = cget(c)
            if h is None:
                args.append(((c[1] + 1) << lv))
                args.append(lv)
            else:
                got[c] = h
        else:
            low.append(c)
            blocks.add((c[1] << lv) >> node_level)
    nterms = len(args) >> 1
    for i in entries:
        blocks.add(i >> node_level)
    for b in blocks:
        args.append(b << node_level)
        args.append((b + 1) << node_level)
    if args:
        for pos, lv, h in con.execute(_sql(nterms, len(blocks)), args):
            if lv < 0:
                ent[pos] = h
            else:
                c = (lv, (pos >> lv) - 1)
                got[c] = h
                if cache is not None:
                    cache[c] = h
    if low:
        leaves = {}
        for c in low:
            lv, k = c
            a = k << lv
            try:
                level = []
                for i in range(a, a + (1 << lv)):
                    lf = leaves.get(i)
                    if lf is None:
                        lf = leaves[i] = hashing.leaf_hash(ent[i])
                    level.append(lf)
            except KeyError as e:
                raise LedgerError("%s: entry %d is missing" % (what, e.args[0])) from None
            while len(level) > 1:
                level = hashing.parent_level(level)
            got[c] = level[0]
    if len(got) < len(coords):
        for lv, k in coords:
            if (lv, k) not in got:
                raise LedgerError("%s: tree node (level %d, index %d) is missing; run `becomingone "
                                  "ledger verify`" % (what, lv, k))
    for i in entries:
        if i not in ent:
            raise LedgerError("%s: entry %d is missing" % (what, i))
    return got, ent
