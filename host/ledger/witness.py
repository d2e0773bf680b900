"""A transparency-log witness (C2SP tlog-witness, cosignatures C2SP tlog-cosignature v1 Ed25519;
docs/LEDGER.md §11): the manifest's Witness node.

For each log it knows -- an origin and the Ed25519 key that signs its checkpoints -- a witness
keeps the latest checkpoint it cosigned. It cosigns a new checkpoint only after checking

  1. the log's signature (unknown origin: 404; no valid signature: 403),
  2. old size <= the checkpoint's size (400), and old size = the size it cosigned last (409,
     answering that size as `text/x.tlog.size`),
  3. an RFC 9162 consistency proof from that size to the new one, against both roots, with the
     log's tree hash (this ledger's: SHA3-256, docs/LEDGER.md §3) (422), or for equal sizes
     equal roots (409),

and it persists the new head (atomically with the checks) before it answers with its
cosignature line. So it never cosigns a rollback or a fork: two checkpoints of one log that are
not consistent with each other. A signed checkpoint that contradicts what it cosigned (a
smaller tree, another root at the same size, a proof that does not verify) is kept as evidence
in `evidence/`.

    w = Witness(folder)                         # folder: witness.json, witness.key, evidence/
    Witness.create(folder, name)                # a new witness: its key and empty state
    w.trust(origin, public_key)                 # a log it witnesses (Ed25519PublicKey)
    status, content_type, body = w.add_checkpoint(request_body_bytes)
    w.head(origin) -> the note it cosigned last (with its cosignature), or None
    w.vkey() -> its verifier key text (name+id+key), what logs configure

The key may also be given (a mesh cell witnesses its peers with its own ledger key).
"""
import base64
import json
import os
import re
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from becomingone.errors import UserError
from becomingone.ledger import checkpoint as ckpt, merkle
from becomingone.ledger.cosignature import cosign, vkey
from becomingone.util.atomic import write_json, write_private

__all__ = ["Witness", "WitnessError", "MAX_PROOF_LINES", "SIZE_TYPE", "request_body"]

STATE = "witness.json"
KEY = "witness.key"
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"
_OLD = re.compile(r"^old (0|[1-9][0-9]*)$")


class WitnessError(UserError):
    """A witness folder that cannot be used (missing, damaged, another name)."""


def request_body(old_size, proof, note):
    """The add-checkpoint request body: `old N`, the proof hashes (bytes) one base64 line each,
    an empty line, the checkpoint note."""
    return ("old %d\n" % old_size + "".join(base64.b64encode(h).decode("ascii") + "\n"
                                             for h in proof) + "\n" + note).encode("utf-8")


class Witness:
    """One witness (module docstring): owns its state file (the logs it knows and the head it
    cosigned for each), its key (unless given) and its evidence folder. add_checkpoint() is
    thread-safe; the state survives restarts (written before every answer)."""

    def __init__(self, folder, key=None, name=None):
        self.folder = os.path.abspath(folder)
        path = os.path.join(self.folder, STATE)
        if not os.path.exists(path):
            if name is None:
                raise WitnessError("no witness in %s (create one with `becomingone witness init "
                                   "--data %s --name NAME`)" % (self.folder, folder))
            self.state = {"name": name, "logs": {}, "heads": {}}
            fresh = True
        else:
            fresh = False
            try:
                with open(path, encoding="utf-8") as f:
                    self.state = json.load(f)
                assert isinstance(self.state, dict) and isinstance(self.state["logs"], dict)
            except (ValueError, KeyError, AssertionError, OSError) as e:
                raise WitnessError("witness state %s is damaged (%s): a witness must never "
                                   "forget what it cosigned; restore it from a backup, or retire "
                                   "this witness" % (path, e)) from None
        if name is not None and self.state["name"] != name:
            raise WitnessError("witness in %s is named %r, not %r" % (self.folder, self.state["name"], name))
        self.name = self.state["name"]
        self._key = key if key is not None else self._load_key()
        self._lock = threading.Lock()
        self.counts = {"cosigned": 0, "refused": 0, "evidence": 0}
        if fresh:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            self._save()

    @classmethod
    def create(cls, folder, name):
        """A new witness in `folder` (its key, empty state); WitnessError if one is there."""
        if not name or any(c.isspace() for c in name) or "+" in name:
            raise WitnessError("witness name %r: a non-empty key name without spaces or '+'" % name)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if os.path.exists(os.path.join(folder, STATE)):
            raise WitnessError("%s already holds a witness" % folder)
        return cls(folder, name=name)

    def __repr__(self):
        return "<Witness %s logs=%d key=***>" % (self.name, len(self.state["logs"]))

    # ------------------------------------------------------------------ keys and logs
    def _load_key(self):
        kpath = os.path.join(self.folder, KEY)
        if not os.path.exists(kpath):
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            write_private(kpath, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        with open(kpath, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise WitnessError("witness key %s is not an Ed25519 key" % kpath)
        return key

    def public_raw(self):
        return ckpt.raw_public(self._key.public_key())

    def vkey(self):
        return vkey(self.name, self.public_raw())

    def trust(self, origin, public_key):
        """Witness the log `origin` whose checkpoints `public_key` signs (raw 32 bytes or an
        Ed25519PublicKey). Refuses to change the key of a log it already witnesses."""
        raw = public_key if isinstance(public_key, bytes) else ckpt.raw_public(public_key)
        if len(raw) != 32:
            raise WitnessError("a log key is an Ed25519 key (32 bytes)")
        b64 = base64.b64encode(raw).decode("ascii")
        with self._lock:
            have = self.state["logs"].get(origin)
            if have is not None and have["public_key"] != b64:
                raise WitnessError("log %s is witnessed with another key already: a new key for a "
                                   "log is a new log (another origin)" % origin)
            self.state["logs"][origin] = {"public_key": b64}
            self._save()

    def logs(self):
        return sorted(self.state["logs"])

    def head(self, origin):
        h = self.state["heads"].get(origin)
        return h["note"] if h else None

    def _log_key(self, origin):
        log = self.state["logs"].get(origin)
        return None if log is None else Ed25519PublicKey.from_public_bytes(
            base64.b64decode(log["public_key"]))

    def _save(self):
        write_json(os.path.join(self.folder, STATE), self.state, mode=0o600, fsync=True,
                   sort_keys=True)

    def _evidence(self, origin, why, body):
        d = os.path.join(self.folder, "evidence")
        os.makedirs(d, mode=0o700, exist_ok=True)
        tag = re.sub(r"[^A-Za-z0-9._-]", "_", origin)[-60:]
        path = os.path.join(d, "%s-%d.txt" % (tag, int(time.time() * 1e6)))
        with open(path, "w", encoding="utf-8") as f:
            f.write("why: %s\n\n" % why)
            f.write(body)
        self.counts["evidence"] += 1
        return path

    # ------------------------------------------------------------------ add-checkpoint
    def add_checkpoint(self, body, now=None):
        """One add-checkpoint request (bytes) -> (HTTP status, content type, response bytes)."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(400, "request body is not UTF-8 text")
        head, sep, note = text.partition("\n\n")
        if not sep:
            return self._refuse(400, "request body needs an old size line, proof lines, an empty "
                                     "line, then the checkpoint")
        lines = head.split("\n")
        m = _OLD.match(lines[0])
        if not m:
            return self._refuse(400, "first line must be 'old N' (N decimal, no leading zeros)")
        old = int(m.group(1))
        if len(lines) - 1 > MAX_PROOF_LINES:
            return self._refuse(400, "at most %d consistency proof lines" % MAX_PROOF_LINES)
        proof = []
        for ln in lines[1:]:
            try:
                h = base64.b64decode(ln, validate=True)
            except ValueError:
                h = b""
            if len(h) != 32:
                return self._refuse(400, "proof line %r is not a base64 32-byte hash" % ln[:60])
            proof.append(h)
        try:
            p = ckpt.parse_note(note)
        except ckpt.CheckpointError as e:
            return self._refuse(400, "checkpoint: %s" % e)
        origin = p["origin"]
        pub = self._log_key(origin)
        if pub is None:
            return self._refuse(404, "unknown log %r" % origin)
        try:
            ckpt.verify_note(note, pub)
        except ckpt.CheckpointError as e:
            return self._refuse(403, "no valid signature by the log's key: %s" % e)
        size, root = p["size"], p["root"]
        if old > size:
            return self._refuse(400, "old size %d is above the checkpoint's size %d" % (old, size))
        with self._lock:
            held = self.state["heads"].get(origin)
            hsize = held["size"] if held else 0
            hroot = base64.b64decode(held["root"]) if held else merkle.EMPTY_ROOT
            if size < hsize:
                self._evidence(origin, "rollback: a signed checkpoint of size %d below the size %d "
                                       "this witness cosigned" % (size, hsize), text)
            if old != hsize:
                self.counts["refused"] += 1
                return 409, SIZE_TYPE, b"%d\n" % hsize
            if old == size:
                if held is not None and root != hroot:
                    self._evidence(origin, "fork: two signed roots for size %d" % size, text)
                    return self._refuse(409, "a different root for size %d than the one this "
                                             "witness cosigned" % size)
            elif old == 0:
                if proof:
                    return self._refuse(422, "the consistency proof from size 0 must be empty")
            elif not merkle.verify_consistency(old, size, hroot, root, proof):
                self._evidence(origin, "the consistency proof from size %d to %d does not verify"
                               % (old, size), text)
                return self._refuse(422, "the consistency proof from size %d to %d does not "
                                         "verify" % (old, size))
            ts = int(time.time() if now is None else now)
            line = cosign(self._key, self.name, p["body"], ts)
            self.state["heads"][origin] = {"size": size, "root": base64.b64encode(root).decode(),
                                           "note": note.rstrip("\n") + "\n" + line}
            self._save()                      # before the answer (C2SP tlog-witness)
            self.counts["cosigned"] += 1
        return 200, "text/plain; charset=utf-8", line.encode("utf-8")

    def _refuse(self, status, why):
        self.counts["refused"] += 1
        return status, "text/plain; charset=utf-8", (why + "\n").encode("utf-8")

    def summary(self):
        heads = {o: h["size"] for o, h in self.state["heads"].items()}
        return {"name": self.name, "vkey": self.vkey(), "logs": self.logs(), "heads": heads,
                "counts": dict(self.counts)}
