"""RFC 9162-style Merkle tree over entry hashes, with SHA3-256 (docs/LEDGER.md §3-§4).

leaf and node hashes: becomingone/ledger/hashing.py, their only definition.
MTH(D[0:n]) splits at k = the largest power of two < n: node(MTH(D[0:k]), MTH(D[k:n])).
The empty tree's root is SHA3-256(b"") (EMPTY_ROOT).

This module is pure: proof *planning* (which complete subtrees a proof needs) is arithmetic on
(level, index) coordinates — subtree (L, k) covers leaves [k*2^L, (k+1)*2^L) — and the store
supplies those hashes. The verify_* functions are the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms
and need nothing but hashlib and hashing.py (the hash definitions): an outside verifier can
import or copy them.
"""
from becomingone.ledger.hashing import EMPTY_ROOT, leaf_hash, node_hash, parent_level  # noqa: F401

__all__ = ["EMPTY_ROOT", "leaf_hash", "node_hash", "split_point", "decompose", "fold",
           "inclusion_plan", "consistency_plan", "root_plan", "verify_inclusion",
           "verify_consistency", "Frontier"]


def split_point(n):
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def decompose(lo, hi):
    """Coordinates (level, index) of the complete aligned subtrees whose concatenation is
    D[lo:hi], left to right, as MTH folds them (lo must be a subtree boundary of the range)."""
    out = []
    while lo < hi:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            out.append((n.bit_length() - 1, lo // n))
            break
        k = split_point(n)
        out.append((k.bit_length() - 1, lo // k))
        lo += k
    return out


def fold(hashes):
    """MTH of a range from its decompose() hashes: right fold with node()."""
    r = hashes[-1]
    for h in reversed(hashes[:-1]):
        r = node_hash(h, r)
    return r


# A proof "plan" is a list of items, each a list of coordinates; the proof element is
# fold([hash(c) for c in item]).

def inclusion_plan(m, n):
    """RFC 9162 §2.1.3.1 PATH(m, D[0:n]) as a plan (bottom-up order)."""
    if not 0 <= m < n:
        raise ValueError("leaf index %d out of range for tree size %d" % (m, n))
    items = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = split_point(hi - lo)
        if m < lo + k:
            items.append(decompose(lo + k, hi))
            hi = lo + k
        else:
            items.append(decompose(lo, lo + k))
            lo = lo + k
    items.reverse()
    return items


def consistency_plan(m, n):
    """RFC 9162 §2.1.4.1 PROOF(m, D[0:n]) as a plan (bottom-up order)."""
    if not 0 <= m <= n:
        raise ValueError("consistency needs 0 <= old size (%d) <= new size (%d)" % (m, n))
    if m == 0 or m == n:
        return []
    items = []
    lo, hi, b = 0, n, True
    while True:
        size = hi - lo
        rel = m - lo
        if rel == size:
            if not b:
                items.append(decompose(lo, hi))
            break
        k = split_point(size)
        if rel <= k:
            items.append(decompose(lo + k, hi))
            hi = lo + k
        else:
            items.append(decompose(lo, lo + k))
            lo, b = lo + k, False
    items.reverse()
    return items


def root_plan(n):
    return decompose(0, n) if n else []


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162 §2.1.3.2. `leaf` is the leaf hash (32 bytes), path a list of 32-byte hashes."""
    if leaf_index >= tree_size or leaf_index < 0:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, path):
    """RFC 9162 §2.1.4.2 (first = old size, second = new size)."""
    if first < 0 or first > second:
        return False
    if first == second:
        return not path and first_root == second_root
    if first == 0:
        return not path  # the empty tree is a prefix of every tree
    if not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


class Frontier:
    """The compact range of a tree: complete-subtree hashes for the set bits of its size,
    largest first. push() returns the completed internal nodes (level >= 1) as
    (level, index, hash) so the store can write them."""

    __slots__ = ("size", "stack")

    def __init__(self, size=0, stack=None):
        self.size = size
        self.stack = list(stack or [])  # [(level, hash)]

    def copy(self):
        return Frontier(self.size, self.stack)

    def push(self, leaf, out):
        st = self.stack
        level, h = 0, leaf
        n = self.size + 1
        while st and st[-1][0] == level:
            h = node_hash(st.pop()[1], h)
            level += 1
            out.append((level, (n >> level) - 1, h))
        st.append((level, h))
        self.size = n

    def extend(self, leaves, store_from=1):
        """Append many leaf hashes at once (level by level, one list comprehension per level).
        Returns the completed internal nodes of level >= store_from as (pos, level, hash) rows,
        pos = (k+1) << level (the tree size at which subtree (level, k) completed)."""
        n0 = self.size
        n1 = n0 + len(leaves)
        have = dict(self.stack)                       # old complete subtrees, by level
        out, stack = [], []
        cur, lv = list(leaves), 0
        while n1 >> lv:
            k0 = n0 >> lv                             # first node of this level new in the batch
            if k0 & 1:                                # its left sibling is an old frontier subtree
                cur.insert(0, have[lv])
                k0 -= 1
            if (n1 >> lv) & 1:
                stack.append((lv, cur[-1]))
            cur = parent_level(cur)
            lv += 1
            if lv >= store_from and cur:
                k = k0 >> 1
                out.extend([((k + j + 1) << lv, lv, h) for j, h in enumerate(cur)])
        stack.reverse()
        self.size, self.stack = n1, stack
        return out

    def root(self):
        if not self.stack:
            return EMPTY_ROOT
        return fold([h for _l, h in self.stack])
