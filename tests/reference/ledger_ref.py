"""Reference implementations of the ledger's canonical JSON and Merkle tree hash, written
plainly from docs/LEDGER.md §1 and §3 (no fast paths, recursive), used only by tests to check
the ledger's own."""
from becomingone.ledger.canonical import canonicalize, encode
from becomingone.ledger.hashing import EMPTY_ROOT, node_hash
from becomingone.ledger.merkle import split_point


def reference_dumps(value, path="data"):
    """The full check then the encoder, without canonical.dumps's template fast path."""
    return encode(canonicalize(value, path))


def reference_root(leaves):
    """Recursive MTH of a list of leaf hashes (RFC 9162 §2.1.1)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split_point(n)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))
