"""T_global from per-origin versioned values (the `versioned` algorithm of docs/MESH.md §1).

Each cell publishes its own T̂_P (complex, |T̂| <= 1: SPEC §4.2) with the number of devices n_P
that contributed, under a version that only grows: (boot epoch in ms, counter), so a restarted
cell's new values still win. Every cell keeps a map origin -> newest signed entry; merging keeps
the higher version per origin, so duplicates, re-deliveries and reordering change nothing
(idempotent, commutative, associative: a state-based CRDT). Entries are signed with the origin's
Ed25519 key over their canonical JSON; with `keys` given, an entry from an unknown origin or with a
bad signature is refused (counted, never merged).

    T_global = Σ_P w_P · T̂_P,  w_P = n_P / Σ_Q n_Q over the live origins (a cell's weight is the
    share of the mesh's devices it speaks for); if no live origin has devices, w_P = 1 / #live.

An origin is live while its newest version was first seen here less than `ttl` seconds ago (the
receiver's clock: no clock agreement needed); expired origins stay in the map (a late duplicate
cannot resurrect an older value) but get no weight.

    agg = VersionedAggregate("cell-a", signing_key=ed25519_private_key, keys={"cell-b": pub, ...})
    agg.publish(T_hat, devices, now)             -> entry dict (also merged locally)
    agg.digest() -> {origin: [epoch, counter]};  agg.delta(peer_digest) -> [entries the peer lacks]
    agg.merge(entries, now) -> number of origins that changed
    agg.t_global(now) -> (complex T_global, {origin: weight})
"""
import base64
import cmath
import json
import math
import time

from cryptography.exceptions import InvalidSignature

from becomingone.errors import MeshError

DEFAULT_TTL = 30.0


class AggregateError(MeshError):
    """A T_global entry or key that cannot be used (bad origin, signature, version)."""


def _body(e):
    return json.dumps({"devices": e["devices"], "im": e["im"], "origin": e["origin"], "re": e["re"],
                       "version": e["version"]}, sort_keys=True, separators=(",", ":")).encode("ascii")


def check_entry(e):
    """Validate the shape of an entry dict; raises AggregateError naming the field."""
    if not isinstance(e, dict) or set(e) - {"origin", "version", "re", "im", "devices", "sig"} \
            or not {"origin", "version", "re", "im", "devices"} <= set(e):
        raise AggregateError("aggregate entry must have origin, version, re, im, devices (and sig), got %r" % (e,))
    o, v = e["origin"], e["version"]
    if not isinstance(o, str) or not 0 < len(o) <= 255:
        raise AggregateError("aggregate entry origin must be a string of 1..255 characters, got %r" % (o,))
    if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(type(x) is int and 0 <= x < 2 ** 63 for x in v)):
        raise AggregateError("aggregate entry %s: version must be [epoch_ms, counter] (ints >= 0), got %r" % (o, v))
    for f in ("re", "im"):
        if type(e[f]) not in (int, float) or not math.isfinite(e[f]):
            raise AggregateError("aggregate entry %s: %s must be a finite number, got %r" % (o, f, e[f]))
    if abs(complex(e["re"], e["im"])) > 1.0 + 1e-9:
        raise AggregateError("aggregate entry %s: |T_hat| must be <= 1 (normalised), got %g"
                             % (o, abs(complex(e["re"], e["im"]))))
    if type(e["devices"]) is not int or not 0 <= e["devices"] <= 1 << 20:
        raise AggregateError("aggregate entry %s: devices must be an int in 0..%d, got %r" % (o, 1 << 20, e["devices"]))
    return e


class VersionedAggregate:
    """The T_global map of a mesh: owns one signed, versioned entry per cell (its T_hat and
    device count), merged by version and expired after `ttl`; t_global() is the weighted
    sum. Raises AggregateError for a bad origin or key; merge() counts refused entries
    instead of raising."""
    def __init__(self, origin, signing_key=None, keys=None, ttl=DEFAULT_TTL, epoch_ms=None):
        if not isinstance(origin, str) or not 0 < len(origin) <= 255:
            raise AggregateError("origin must be a string of 1..255 characters, got %r" % (origin,))
        if type(ttl) not in (int, float) or not ttl > 0:
            raise AggregateError("ttl must be a number of seconds > 0, got %r" % (ttl,))
        self.origin, self.key, self.keys, self.ttl = origin, signing_key, keys, float(ttl)
        self.epoch = int(time.time() * 1000) if epoch_ms is None else int(epoch_ms)
        self.counter = 0
        self.entries = {}          # origin -> entry dict
        self.seen = {}             # origin -> local time its current version arrived
        self.refused = 0
        self.duplicates = 0

    def publish(self, t_hat, devices, now=None):
        now = time.monotonic() if now is None else now
        self.counter += 1
        t_hat = complex(t_hat)
        e = {"origin": self.origin, "version": [self.epoch, self.counter], "re": t_hat.real,
             "im": t_hat.imag, "devices": devices}
        check_entry(e)
        if self.key is not None:
            e["sig"] = base64.b64encode(self.key.sign(_body(e))).decode("ascii")
        self.entries[self.origin] = e
        self.seen[self.origin] = now
        return dict(e)

    def verify(self, e):
        """Whether entry `e` is signed by its origin's key (always True without `keys`)."""
        if self.keys is None:
            return True
        pub = self.keys.get(e["origin"])
        if pub is None or not isinstance(e.get("sig"), str):
            return False
        try:
            pub.verify(base64.b64decode(e["sig"], validate=True), _body(e))
            return True
        except (InvalidSignature, ValueError):
            return False

    def merge(self, entries, now=None):
        """Merge entries (any order, duplicates allowed) -> number of origins whose value changed.
        Malformed entries raise AggregateError; unsigned/forged ones (with `keys`) are counted in
        `refused` and skipped."""
        now = time.monotonic() if now is None else now
        changed = 0
        for e in entries:
            check_entry(e)
            o = e["origin"]
            cur = self.entries.get(o)
            if cur is not None and tuple(e["version"]) <= tuple(cur["version"]):
                self.duplicates += 1
                continue
            if o == self.origin:
                self.refused += 1      # nobody else may publish our values
                continue
            if not self.verify(e):
                self.refused += 1
                continue
            self.entries[o] = {k: (list(v) if k == "version" else v) for k, v in e.items()}
            self.seen[o] = now
            changed += 1
        return changed

    def digest(self):
        return {o: list(e["version"]) for o, e in self.entries.items()}

    def delta(self, peer_digest):
        """Entries newer than what `peer_digest` ({origin: version}) holds."""
        if not isinstance(peer_digest, dict):
            raise AggregateError("a digest is a mapping origin -> [epoch_ms, counter]")
        out = []
        for o, e in self.entries.items():
            v = peer_digest.get(o)
            if v is None or tuple(e["version"]) > tuple(v):
                out.append(dict(e))
        return out

    def live(self, now=None):
        now = time.monotonic() if now is None else now
        return sorted(o for o, t in self.seen.items() if now - t < self.ttl)

    def t_global(self, now=None):
        """-> (T_global complex, {origin: weight}) over the live origins (weights sum to 1)."""
        live = self.live(now)
        if not live:
            return 0j, {}
        total = sum(self.entries[o]["devices"] for o in live)
        if total > 0:
            w = {o: self.entries[o]["devices"] / total for o in live}
        else:
            w = {o: 1.0 / len(live) for o in live}
        t = sum((w[o] * complex(self.entries[o]["re"], self.entries[o]["im"]) for o in live), 0j)
        return t, w

    def coherence(self, now=None):
        """|T_global|^2, comparable with the collapse threshold I_c."""
        return abs(self.t_global(now)[0]) ** 2

    def phase(self, now=None):
        return cmath.phase(self.t_global(now)[0])
