"""Reads of the stored Merkle tree (docs/LEDGER.md §3, "Storage").

On-disk format 2 stores complete subtrees of level >= node_level (meta row; NODE_LEVEL = 2,
i.e. 4 leaves and up, for new files) in table `nodes(pos, level, hash)`, pos = (k+1) << level;
a smaller complete subtree (level, k) is recomputed from the raw entry hashes of entries
[k << level, (k+1) << level), read with the same query. Format 1 (older files) stored every
level >= 1. Used by the Ledger, by `ledger verify` and by the mesh replicas.
"""
import hashlib

from host.ledger.db import NODE_LEVEL, LedgerError, format_of  # noqa: F401  (re-exported)


def node_rows(nodes, node_level):
    """Rows (pos, level, hash) to store for completed nodes given as (level, k, hash)
    (node_level: format_of(con)[1] of the database written)."""
    return [((k + 1) << lv, lv, h) for lv, k, h in nodes if lv >= node_level]


def _mini_root(hashes):
    """Root of a perfect subtree from its raw entry hashes (a power of two of them)."""
    sha3 = hashlib.sha3_256
    level = [sha3(b"\x00" + h).digest() for h in hashes]
    while len(level) > 1:
        level = [sha3(b"\x01" + x + y).digest() for x, y in zip(level[0::2], level[1::2])]
    return level[0]


def fetch(con, coords, entries=(), node_level=None, cache=None, what="ledger"):
    """Hashes of complete subtrees `coords` [(level, k)] and raw entry hashes of `entries`, in
    ONE query -> ({(level, k): hash}, {index: entry hash bytes}). `cache` (a dict) supplies and
    keeps stored nodes (they never change). node_level None: read from the file.
    Raises LedgerError naming what is missing."""
    if node_level is None:
        node_level = format_of(con)[1]
    got, ent = {}, {}
    terms, args, spans = [], [], set()
    for c in coords:
        lv, k = c
        if lv >= node_level:
            h = cache.get(c) if cache is not None else None
            if h is None:
                terms.append("(pos=? AND level=?)")
                args += ((k + 1) << lv, lv)
            else:
                got[c] = h
        else:
            spans.add((k << lv, (k + 1) << lv))
    for i in entries:
        spans.add((i, i + 1))
    parts = []
    if terms:
        parts.append("SELECT pos, level, hash FROM nodes WHERE " + " OR ".join(terms))
    if spans:
        parts.append("SELECT idx, -1, hash FROM entries WHERE "
                     + " OR ".join(["(idx>=? AND idx<?)"] * len(spans)))
        for a, b in spans:
            args += (a, b)
    if parts:
        for pos, lv, h in con.execute(" UNION ALL ".join(parts), args):
            if lv < 0:
                ent[pos] = h
            else:
                c = (lv, (pos >> lv) - 1)
                got[c] = h
                if cache is not None:
                    cache[c] = h
    for c in coords:
        if c in got:
            continue
        lv, k = c
        if lv >= node_level:
            raise LedgerError("%s: tree node (level %d, index %d) is missing; run `becomingone ledger "
                              "verify`" % (what, lv, k))
        a = k << lv
        try:
            got[c] = _mini_root([ent[i] for i in range(a, a + (1 << lv))])
        except KeyError as e:
            raise LedgerError("%s: entry %d is missing" % (what, e.args[0])) from None
    for i in entries:
        if i not in ent:
            raise LedgerError("%s: entry %d is missing" % (what, i))
    return got, ent

