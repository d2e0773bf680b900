"""Verifiable ledger: append-only SQLite (WAL) store of hash-chained entries, an RFC 9162-style
Merkle tree (SHA3-256) with stored nodes, inclusion/consistency proofs and Ed25519-signed
checkpoints. docs/LEDGER.md gives the bytes; this docstring is the stable API.

    from becomingone.ledger import Ledger
    led = Ledger("DATA/ledger.sqlite", checkpoint_every=10000, group_commit_ms=0.0, max_batch=8192,
                 synchronous="FULL")  # == Ledger.open(path, ...); creates file, genesis, key on first use
                                      # ("NORMAL": survives a killed process, not a power loss)
    e = led.append("action", {"action": "reboot", "device": 3})   # -> Entry, durable on return
    es = led.append_many([("witness", {...}), ("pulse", {...})])  # one transaction
    fut = led.submit("witness", {"device": 3, "layer": "micro", ...}, callback=None)
    entry = fut.result()              # a concurrent.futures.Future (LedgerFuture), resolved after COMMIT
    entry = await asyncio.wrap_future(fut)           # from an asyncio loop
    led.flush(); led.close()          # or `with Ledger(path) as led:`

    led.size, led.get(i) -> Entry, led.entries(start, stop) -> iterator of Entry
    led.root(size=None) -> 32 bytes
    led.inclusion_proof(index, size=None) -> {"type","index","tree_size","entry_hash","leaf_hash","root","path"}
    led.consistency_proof(old, new=None) -> {"type","old_size","new_size","old_root","new_root","path"}
    led.checkpoint() -> note text (signed now); led.latest_checkpoint() -> text | None
    led.verify(deep=False, workers=None) -> VerifyResult(.ok, .first_bad {"index","part","what"},
                                      .size, .root, .message(), .to_dict())
    verify_path(path, deep=False, workers=None) -> VerifyResult   (no Ledger needed, read-only)
    led.export(folder) -> manifest dict
    led.public_key_pem() -> str; led.origin -> str

Entry: .index, .timestamp (float Unix s), .data (dict with "kind"), .data_json (canonical text),
.previous_hash, .hash (64 hex), .to_dict(), .to_json().
Kinds (becomingone.ledger.kinds.KINDS): action, pulse, flow, witness, collapse, config (+ genesis at 0).
PulseRecorder(sink, device, every=N) writes pulse summaries every N beats (N=1: every beat).
Outside verifiers: becomingone.ledger.merkle.verify_inclusion / verify_consistency (hashlib only),
becomingone.ledger.checkpoint.verify_note.

Errors: bad kind/data -> UserError (KindError) raised at append/submit; a corrupted or locked
database -> LedgerCorrupt / LedgerLocked (UserErrors naming the file and what to do); a file of a
newer on-disk format -> LedgerError. Format-1 files are upgraded on the first writable open
(docs/LEDGER.md §3). becomingone.ledger.tree reads the stored tree (also used by becomingone.mesh).

Thread-safety: one Ledger object may be shared by threads (an asyncio loop thread, the writer
thread it owns, worker threads): every method takes an internal lock around its SQLite work;
submit() only validates and queues (never blocks on I/O), so it is safe to call from an event
loop. A commit holds the lock for the duration of one batch (typically < 50 ms). Only ONE
process may write a ledger (a second writer is detected and refused); any number may read and
`verify` (separate read-only connections on WAL snapshots).
"""
from becomingone.ledger.canonical import CanonicalError
from becomingone.ledger.db import LedgerCorrupt, LedgerError, LedgerLocked
from becomingone.ledger.kinds import KINDS, KindError, PulseRecorder
from becomingone.ledger.store import Entry, Ledger
from becomingone.ledger.verify import VerifyResult, verify_path

__all__ = ["Ledger", "Entry", "VerifyResult", "verify_path", "KINDS", "KindError", "PulseRecorder",
           "LedgerError", "LedgerCorrupt", "LedgerLocked", "CanonicalError"]
