"""The ledger's hashes, defined here and nowhere else (docs/LEDGER.md §2-§3). SHA3-256 throughout:

    entry  = SHA3-256(hash input)   hash input = the canonical JSON text
             {"data":<data_json>,"index":<i>,"previous_hash":"<64 hex>","timestamp":<repr(ts)>}
    leaf   = SHA3-256(0x00 || entry hash, 32 raw bytes)
    node   = SHA3-256(0x01 || left || right)
    empty  = SHA3-256(b"")          the root of the empty tree

Pure hashlib, like merkle.py: an outside verifier can import or copy this file. The batch
helpers (chain, entry_hashes, leaf_hashes, parent_level) are what the store, the verifier, the
replicas and the archives run over many entries at once.
"""
import hashlib

__all__ = ["LEAF_PREFIX", "NODE_PREFIX", "EMPTY_ROOT", "entry_hash_input", "entry_hash", "chain",
           "entry_hashes", "leaf_hash", "node_hash", "leaf_hashes", "parent_level"]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
_sha3 = hashlib.sha3_256
EMPTY_ROOT = _sha3(b"").digest()


def entry_hash_input(index, timestamp, data_json, previous_hash):
    """The exact bytes hashed for an entry; data_json is the canonical text of its data,
    previous_hash the 64 hex digits of the entry before (zeros for the genesis entry)."""
    return (f'{{"data":{data_json},"index":{index},"previous_hash":"{previous_hash}",'
            f'"timestamp":{timestamp!r}}}').encode("ascii")


def entry_hash(index, timestamp, data_json, previous_hash):
    """The entry hash (32 raw bytes) of entry_hash_input(...)."""
    return _sha3(entry_hash_input(index, timestamp, data_json, previous_hash)).digest()


def chain(first_index, previous, items):
    """Entry hashes (raw) of consecutive entries from `first_index`, chained from `previous` (the
    raw hash of the entry before them); items: (data_json, timestamp, ...) tuples."""
    out = []
    add = out.append
    ph = previous.hex()
    i = first_index
    for item in items:
        h = _sha3(entry_hash_input(i, item[1], item[0], ph)).digest()
        add(h)
        ph = h.hex()
        i += 1
    return out


def entry_hashes(rows):
    """Entry hashes (raw) of stored rows (index, timestamp, data_json, previous hash raw, ...),
    each from its own stored previous hash (the caller compares them with the chain)."""
    return [_sha3(entry_hash_input(r[0], r[1], r[2], r[3].hex())).digest() for r in rows]


def leaf_hash(entry_hash_bytes):
    return _sha3(LEAF_PREFIX + entry_hash_bytes).digest()


def node_hash(left, right):
    return _sha3(NODE_PREFIX + left + right).digest()


def leaf_hashes(entry_hashes_raw):
    """Leaf hashes of many entry hashes (raw bytes), in order."""
    return [_sha3(LEAF_PREFIX + h).digest() for h in entry_hashes_raw]


def parent_level(level):
    """The level above a list of an even number of sibling hashes: node(level[0], level[1]), ..."""
    return [_sha3(NODE_PREFIX + x + y).digest() for x, y in zip(level[0::2], level[1::2])]
