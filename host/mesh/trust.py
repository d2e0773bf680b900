"""Trust between cells: a folder of `<cell>.json` files {"cell", "origin", "public_key_pem"},
one per cell: its ledger origin and the Ed25519 key that signs its checkpoints and T_global
entries (docs/MESH.md). Every file is written whole or not at all.

The folder is live: a running cell reloads it when it changes (TrustWatch: the folder's own
mtime every 5 s, which every atomic write or removal moves; every file's mtime every
`scan_every` seconds, for a file copied over in place; at once after SIGHUP), so a new cell is
trusted and a removed one refused without a restart (docs/MESH.md "Trust").
"""
import json
import os
import time

from becomingone.ledger import checkpoint as ckpt
from becomingone.util.atomic import write_json

__all__ = ["write_trust", "write_trust_entry", "load_trust", "remove_trust", "TrustWatch", "fingerprint",
           "recent_fingerprint"]

_CACHE = {}               # folder -> (fingerprint, {cell: (origin, key)}): cells of one process share it
_SCANS = {}               # folder -> (clock, when, folder mtime, fingerprint): a recent scan, shared


def write_trust_entry(folder, cell, origin, public_key_pem):
    """Write (or replace) one cell's trust file."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, cell + ".json"),
               {"cell": cell, "origin": origin, "public_key_pem": public_key_pem})


def write_trust(folder, cell, ledger):
    """This cell's own trust file, from its ledger."""
    write_trust_entry(folder, cell, ledger.origin, ledger.public_key_pem())


def remove_trust(folder, cell):
    """Stop trusting `cell` (its file removed); -> whether there was one."""
    try:
        os.remove(os.path.join(folder, cell + ".json"))
        return True
    except FileNotFoundError:
        return False


def fingerprint(folder):
    """What a reload depends on: (name, mtime, size) of every trust file."""
    out = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name.endswith(".json"):
                st = e.stat()
                out.append((e.name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def recent_fingerprint(folder, mtime, max_age, clock=time.monotonic):
    """fingerprint(folder), or the one another watch of this process took within `max_age` s
    while the folder's mtime was `mtime` (a write or removal moves it: never hides a change).
    With many cells in one process (`becomingone bench mesh`: 250 a process, 1,000 trust files)
    every cell's periodic scan would otherwise cost N stats, N^2 in all."""
    key = os.path.abspath(folder)
    now = clock()
    hit = _SCANS.get(key)
    if hit is not None and hit[0] is clock and hit[2] == mtime and 0 <= now - hit[1] <= max_age:
        return hit[3]
    fp = fingerprint(folder)
    _SCANS[key] = (clock, now, mtime, fp)
    return fp


def load_trust(folder):
    """{cell: (origin, Ed25519 public key)} of every trust file in `folder` (a fresh dict; the
    parsed keys are shared with other callers while the folder is unchanged)."""
    fp = fingerprint(folder)
    hit = _CACHE.get(os.path.abspath(folder))
    if hit is not None and hit[0] == fp:
        return dict(hit[1])
    out = {}
    for name, _m, _s in fp:
        try:
            with open(os.path.join(folder, name)) as f:
                t = json.load(f)
        except FileNotFoundError:
            continue                          # removed while we listed
        out[t["cell"]] = (t["origin"], ckpt.load_public_key(t["public_key_pem"].encode("ascii")))
    _CACHE[os.path.abspath(folder)] = (fp, out)
    return dict(out)


class TrustWatch:
    """Tells a running cell when its trust folder changed: the folder's mtime (one stat) every
    `look_every` seconds, every file's every `scan_every` seconds, and at once after request()
    (SIGHUP)."""

    def __init__(self, folder, scan_every=30.0, look_every=5.0, clock=time.monotonic):
        self.folder, self.scan_every, self.clock = folder, float(scan_every), clock
        self.look_every = float(look_every)    # the folder's mtime at most this often
        self._looked = clock()
        self.requested = False
        self.reloads = 0
        self._mtime = self._dir_mtime()
        self._fp = recent_fingerprint(folder, self._mtime, self.look_every, clock) \
            if os.path.isdir(folder) else ()
        self._scanned = clock()

    def _dir_mtime(self):
        try:
            return os.stat(self.folder).st_mtime_ns
        except FileNotFoundError:
            return None

    def request(self):
        """Reload at the next check (a SIGHUP handler calls this; safe from any thread)."""
        self.requested = True

    def changed(self):
        """Whether the trust files changed since the last True (then the caller reloads)."""
        now = self.clock()
        if not self.requested and now - self._looked < self.look_every:
            return False
        self._looked = now
        m = self._dir_mtime()
        if not (self.requested or m != self._mtime or now - self._scanned >= self.scan_every):
            return False
        forced, self.requested = self.requested, False
        self._mtime, self._scanned = m, now
        if m is None:
            fp = ()
        elif forced:
            fp = fingerprint(self.folder)
        else:                       # a scan another cell of this process just took will do
            fp = recent_fingerprint(self.folder, m, self.look_every, self.clock)
        if fp == self._fp:
            return False
        self._fp = fp
        self.reloads += 1
        return True
