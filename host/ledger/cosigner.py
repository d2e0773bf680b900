"""The log's side of witnessing (docs/LEDGER.md §11): this ledger's checkpoints leave the host
and come back cosigned.

Each round signs a checkpoint when the tree grew since the last one and sends it to every
witness with an RFC 9162 consistency proof from the size that witness cosigned last (C2SP
tlog-witness add-checkpoint; a witness whose size is not known yet is asked with `old 0` and
answers its size: 409 text/x.tlog.size). A cosignature that verifies with the witness's
configured key is stored in the ledger (`cosignatures` table); `ledger verify` counts them.

A witness that holds a larger tree than this ledger has -- or another root for a size -- is an
alert: the ledger was rolled back or rewritten after that witness saw it (`alerts`, the
coordinator's health and status show them).

    ws = [WitnessRef(name, public_key, http_submitter(url)), ...]
    c = Cosigner(ledger, ws)
    c.round()                  # sync: checkpoint + every witness (HTTP)
    await c.submit_async(w, note, send)   # the mesh's asyncio transport (host/mesh/cosign.py)
    c.status()
"""
import threading
import time
import urllib.error
import urllib.request

from becomingone.ledger import checkpoint as ckpt
from becomingone.ledger.cosignature import CosignatureError, cosignature_lines, verify_line
from becomingone.ledger.witness import SIZE_TYPE, request_body

__all__ = ["Cosigner", "WitnessRef", "http_submitter", "witness_refs", "CosignRounds"]


class WitnessRef:
    """A witness this ledger asks: its key name, Ed25519 public key, where it is (label) and
    submit(body bytes) -> (status, content type, body bytes) (None for an async transport)."""

    __slots__ = ("name", "public_key", "label", "submit")

    def __init__(self, name, public_key, submit=None, label=None):
        self.name, self.public_key, self.submit, self.label = name, public_key, submit, label or name


def http_submitter(url, timeout=10.0):
    """submit() for a witness reached over HTTP at submission prefix `url`."""
    target = url.rstrip("/") + "/add-checkpoint"

    def submit(body):
        req = urllib.request.Request(target, data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read(65536)
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read(65536)
        except (urllib.error.URLError, OSError) as e:
            return 0, "", str(getattr(e, "reason", e)).encode("utf-8", "replace")
    return submit


class Cosigner:
    """Owns what each witness cosigned last (learned from its answers) and the alerts; the
    ledger stores the cosignatures. Thread-safe enough for one driver at a time (a thread or
    the mesh loop). Raises nothing: failures are counted and shown in status()."""

    def __init__(self, ledger, witnesses=()):
        self.ledger = ledger
        self.witnesses = list(witnesses)
        self.sizes = {}                 # witness name -> the size it cosigned last
        self.last = {}                  # witness name -> last outcome text
        self.alerts = []                # rollback / fork reports
        self.counts = {"rounds": 0, "cosigned": 0, "refused": 0, "unreachable": 0}

    # ------------------------------------------------------------------ one round
    def note(self):
        """The checkpoint to get cosigned: the latest, signed anew if the tree grew."""
        led = self.ledger
        note = led.latest_checkpoint()
        if note is None or ckpt.parse_note(note)["size"] < led.size:
            note = led.checkpoint()
        return note

    def round(self):
        """Sign if needed and ask every witness (sync transports). Returns the note."""
        self.counts["rounds"] += 1
        note = self.note()
        for w in self.witnesses:
            if w.submit is not None:
                self.submit(w, note)
        return note

    def submit(self, w, note):
        old = self.sizes.get(w.name, 0)
        for _ in range(3):
            body = self._request(w, note, old)
            if body is None:
                return False
            nxt = self._answer(w, note, *w.submit(body))
            if nxt is None:
                return self.sizes.get(w.name) == ckpt.parse_note(note)["size"]
            old = nxt
        return False

    async def submit_async(self, w, note, send):
        """The same over an async transport: send(body) -> awaitable (status, ctype, body)."""
        old = self.sizes.get(w.name, 0)
        for _ in range(3):
            body = self._request(w, note, old)
            if body is None:
                return False
            nxt = self._answer(w, note, *(await send(body)))
            if nxt is None:
                return self.sizes.get(w.name) == ckpt.parse_note(note)["size"]
            old = nxt
        return False

    # ------------------------------------------------------------------ protocol steps
    def _request(self, w, note, old):
        size = ckpt.parse_note(note)["size"]
        if old > size:
            self._alert(w, "witness %s cosigned size %d, but this ledger's checkpoint has %d "
                           "entries: the ledger was rolled back after the witness saw it"
                        % (w.name, old, size))
            return None
        proof = []
        if 0 < old < size:
            p = self.ledger.consistency_proof(old, size)
            proof = [bytes.fromhex(h) for h in p["path"]]
        return request_body(old, proof, note)

    def _answer(self, w, note, status, ctype, body):
        """None when done (cosigned or refused), or the old size to try again with."""
        size = ckpt.parse_note(note)["size"]
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        if status == 200:
            p = ckpt.parse_note(note)
            good = 0
            for line in cosignature_lines(text):
                try:
                    ts = verify_line(line, p["body"], w.name, w.public_key)
                except CosignatureError:
                    continue
                self.ledger.add_cosignature(size, w.name, line, ts)
                good += 1
            if good:
                self.sizes[w.name] = size
                self.counts["cosigned"] += 1
                self.last[w.name] = "cosigned size %d" % size
            else:
                self.counts["refused"] += 1
                self.last[w.name] = "answer without a valid cosignature by %s" % w.name
            return None
        if status == 409 and ctype.startswith(SIZE_TYPE):
            try:
                have = int(text.strip())
            except ValueError:
                self.last[w.name] = "409 with a bad size %r" % text[:40]
                return None
            self.sizes[w.name] = have
            if have > self.ledger.size:
                self._alert(w, "witness %s cosigned size %d, this ledger has %d entries: it was "
                               "rolled back after the witness saw it" % (w.name, have, self.ledger.size))
                return None
            return have
        if status == 0:
            self.counts["unreachable"] += 1
            self.last[w.name] = "unreachable: %s" % text[:200]
            return None
        self.counts["refused"] += 1
        self.last[w.name] = "HTTP %d: %s" % (status, text.strip()[:200])
        if status == 409:
            self._alert(w, "witness %s refused a different root for size %d: the ledger was "
                           "rewritten after the witness saw it (%s)" % (w.name, size, text.strip()[:120]))
        elif status == 422:
            self._alert(w, "witness %s refused the consistency proof to size %d (%s)"
                        % (w.name, size, text.strip()[:120]))
        return None

    def _alert(self, w, what):
        if not self.alerts or self.alerts[-1]["what"] != what:
            self.alerts.append({"t": time.time(), "witness": w.name, "what": what})
            del self.alerts[:-20]
        self.last[w.name] = what

    def status(self):
        return {"witnesses": [{"name": w.name, "at": w.label, "cosigned_size": self.sizes.get(w.name),
                               "last": self.last.get(w.name)} for w in self.witnesses],
                "alerts": list(self.alerts), "counts": dict(self.counts)}


def witness_refs(entries):
    """WitnessRefs of ledger.witnesses config entries ({name, url, public_key})."""
    from becomingone.errors import ConfigError
    from becomingone.ledger.cosignature import public_key_of
    out = []
    for i, w in enumerate(entries):
        try:
            name, pub = public_key_of(w["public_key"], w["name"])
        except CosignatureError as e:
            raise ConfigError("config key ledger.witnesses[%d].public_key: %s (allowed: the vkey "
                              "`becomingone witness init` printed)" % (i, e)) from None
        out.append(WitnessRef(name, pub, http_submitter(w["url"]), w["url"]))
    return out


class CosignRounds:
    """Runs Cosigner.round() every `interval` seconds in its own thread (HTTP to witnesses must
    never hold up the processing thread)."""

    def __init__(self, cosigner, interval=10.0):
        self.cosigner = cosigner
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = None
        self.errors = 0
        self.last_error = None

    def _run(self):
        while not self._stop.wait(self.interval):
            self._once()

    def _once(self):
        try:
            if self.cosigner.ledger.size:
                self.cosigner.round()
        except Exception as e:            # counted and shown; the next round tries again
            self.errors += 1
            self.last_error = "%s: %s" % (type(e).__name__, e)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="cosign", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None

    def status(self):
        s = self.cosigner.status()
        s["errors"], s["last_error"] = self.errors, self.last_error
        return s
