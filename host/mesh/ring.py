"""Consistent-hashing ring (ET Eq 28) with virtual nodes, weighted by each cell's load (the THHE
homeostat): weight = capacity / (1 + load), a cell gets round(vnodes * weight) virtual nodes
(at least 1), so a hot cell owns less of the ring and gets fewer archive shards / devices.

Hash: BLAKE2b (64-bit digest, personalised "bo-ring") instead of the seed's MD5. MD5 collisions
can be made at will (and chosen-prefix collisions cheaply), so whoever names keys or cells could
pile items on one cell or make two vnodes coincide; BLAKE2b is collision- and preimage-resistant
and faster than MD5 and SHA-256 in CPython's hashlib. 64 bits of position are plenty: the ring
only needs the order of hashes.

Virtual node j of cell c sits at H(len(c) || c || j); a cell with v virtual nodes uses j = 0..v-1,
so changing a cell's weight adds or removes only ITS highest-numbered virtual nodes: the keys
that move are exactly those of the added/removed arcs, all of them to or from that cell, and
the fraction of the key space that moves equals the change of that cell's share (the least any
placement reaching that share can move). `set_load` returns that fraction, computed exactly.

    ring = Ring({"a": (1.0, 0.0), "b": (2.0, 0.5)}, vnodes=100)   # name -> (capacity, load)
    ring.get("segment:origin/0-1000") -> "b"
    ring.get_n(key, 3) -> 3 distinct cells, clockwise from the key (replication / shard spread)
    ring.set_load("a", 3.0) -> moved fraction of the key space; ring.add / remove / shares()
"""
import bisect
import hashlib

from becomingone.errors import UserError

DEFAULT_VNODES = 100          # virtual nodes per unit of weight (capacity 1, load 0)
MAX_VNODES_PER_CELL = 20000
SPACE = 1 << 64


def key_position(key):
    """Ring position of a key (str or bytes): BLAKE2b-64, big-endian."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif not isinstance(key, (bytes, bytearray)):
        raise UserError("ring keys are str or bytes, got %s" % type(key).__name__)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, person=b"bo-ring").digest(), "big")


def _vnode_position(name, j):
    b = name.encode("utf-8")
    return key_position(len(b).to_bytes(2, "big") + b + j.to_bytes(4, "big"))


def _check_number(what, name, v, low, low_ok):
    if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")) \
            or (v < low if low_ok else v <= low):
        raise UserError("cell %r: %s must be a finite number %s %s, got %r"
                        % (name, what, ">=" if low_ok else ">", low, v))
    return float(v)


class Ring:
    """A load-weighted consistent-hashing ring of cells (weight = capacity / (1 + load)):
    owns the virtual nodes and answers which cells hold a key. Raises UserError for bad
    cells, capacities or loads."""
    def __init__(self, cells=None, vnodes=DEFAULT_VNODES):
        if type(vnodes) is not int or not 1 <= vnodes <= MAX_VNODES_PER_CELL:
            raise UserError("vnodes must be an integer in 1..%d, got %r" % (MAX_VNODES_PER_CELL, vnodes))
        self.vnodes = vnodes
        self._cells = {}          # name -> [capacity, load, vnode count]
        self._pos = []            # sorted vnode positions
        self._owner = []          # owner name per position
        self._vpos = {}           # name -> list of its vnode positions (j order)
        if cells is None:
            cells = {}
        if isinstance(cells, (list, tuple)):
            cells = {c: (1.0, 0.0) for c in cells}
        for name, spec in dict(cells).items():
            if isinstance(spec, (int, float)):
                spec = (spec, 0.0)
            cap, load = spec
            self._set(name, cap, load, rebuild=False)
        self._rebuild()
        self.last_move = 0.0

    # ------------------------------------------------------------- weights
    def weight(self, name):
        cap, load, _v = self._cells[self._known(name)]
        return cap / (1.0 + load)

    def _count(self, cap, load):
        return max(1, min(MAX_VNODES_PER_CELL, int(round(self.vnodes * cap / (1.0 + load)))))

    def _known(self, name):
        if name not in self._cells:
            raise UserError("no cell %r on the ring (cells: %s)" % (name, ", ".join(sorted(self._cells)) or "none"))
        return name

    def _set(self, name, cap, load, rebuild=True):
        if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 255:
            raise UserError("cell names are non-empty strings of at most 255 bytes, got %r" % (name,))
        cap = _check_number("capacity", name, cap, 0.0, False)
        load = _check_number("load", name, load, 0.0, True)
        v = self._count(cap, load)
        self._cells[name] = [cap, load, v]
        have = self._vpos.setdefault(name, [])
        while len(have) < v:
            have.append(_vnode_position(name, len(have)))
        del have[v:]
        if rebuild:
            return self._rebuild()
        return 0.0

    def _rebuild(self):
        """Rebuild the sorted ring; returns the fraction of the key space whose owner changed."""
        old_pos, old_owner = self._pos, self._owner
        pairs = sorted((p, n) for n, ps in self._vpos.items() for p in ps)
        self._pos = [p for p, _ in pairs]
        self._owner = [n for _, n in pairs]
        if not old_pos:
            self.last_move = 1.0 if self._pos else 0.0
            return self.last_move
        moved = 0
        # walk the union of boundaries; a point x belongs to the first vnode at or after x
        bounds = sorted(set(old_pos) | set(self._pos))
        prev = bounds[-1] - SPACE
        for b in bounds:
            if self._lookup(old_pos, old_owner, b) != self._lookup(self._pos, self._owner, b):
                moved += b - prev
            prev = b
        self.last_move = moved / SPACE
        return self.last_move

    @staticmethod
    def _lookup(pos, owner, x):
        if not pos:
            return None
        i = bisect.bisect_left(pos, x)
        return owner[i if i < len(pos) else 0]

    # ------------------------------------------------------------- changes
    def add(self, name, capacity=1.0, load=0.0):
        if name in self._cells:
            raise UserError("cell %r is already on the ring" % name)
        return self._set(name, capacity, load)

    def remove(self, name):
        self._known(name)
        del self._cells[name]
        del self._vpos[name]
        return self._rebuild()

    def set_load(self, name, load):
        """Re-weight a cell from its load; returns the fraction of keys that changed owner."""
        cap = self._cells[self._known(name)][0]
        return self._set(name, cap, load)

    def set_capacity(self, name, capacity):
        load = self._cells[self._known(name)][1]
        return self._set(name, capacity, load)

    # ------------------------------------------------------------- lookups
    @property
    def cells(self):
        return sorted(self._cells)

    def __len__(self):
        return len(self._cells)

    def get(self, key):
        if not self._pos:
            raise UserError("the ring has no cells")
        return self._lookup(self._pos, self._owner, key_position(key))

    def get_n(self, key, n):
        """n distinct cells for `key`: its owner, then the next distinct owners clockwise."""
        if type(n) is not int or not 1 <= n <= len(self._cells):
            raise UserError("get_n needs 1 <= n <= %d (the number of cells), got %r" % (len(self._cells), n))
        pos, owner = self._pos, self._owner
        i = bisect.bisect_left(pos, key_position(key))
        out, seen, m = [], set(), len(pos)
        for step in range(m):
            c = owner[(i + step) % m]
            if c not in seen:
                seen.add(c)
                out.append(c)
                if len(out) == n:
                    break
        return out

    def shares(self):
        """Fraction of the key space each cell owns (exact, from the arcs)."""
        out = {c: 0 for c in self._cells}
        pos, owner = self._pos, self._owner
        for i, p in enumerate(pos):
            out[owner[i]] += (p - pos[i - 1]) % SPACE if len(pos) > 1 else SPACE
        return {c: v / SPACE for c, v in out.items()}

    def assign_devices(self, device_ids):
        """{device id: cell} for devices of a site shared by several cells (key "device:<id>")."""
        return {d: self.get("device:%d" % d) for d in device_ids}

    def describe(self):
        return {c: {"capacity": v[0], "load": v[1], "vnodes": v[2]} for c, v in sorted(self._cells.items())}


def parse_cells(text, vnodes=DEFAULT_VNODES):
    """'a,b,c' or 'a=2,b=1:0.5' (name=capacity[:load]) -> Ring."""
    cells = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, spec = part.partition("=")
        name = name.strip()
        cap, load = 1.0, 0.0
        if spec:
            c, _, l = spec.partition(":")
            try:
                cap = float(c)
                load = float(l) if l else 0.0
            except ValueError:
                raise UserError("cell %r: expected name=capacity[:load] with numbers, got %r" % (name, part)) from None
        if name in cells:
            raise UserError("cell %r is listed twice" % name)
        cells[name] = (cap, load)
    if not cells:
        raise UserError("no cells given (expected a comma-separated list such as a,b,c or a=2:0.5,b)")
    return Ring(cells, vnodes=vnodes)


_HOLDERS = {}             # (cells, fanout) -> {owner: [holders]}: a few recent sets only


def ledger_holders(cells, fanout):
    """{owner: [holders]}: each cell's ledger is replicated in full by the `fanout` cells after
    it on the consistent-hashing ring of `cells` (key "ledger:<owner>"; the owner skipped).
    Cached per set of cells, so the cells of one process (and every period) share it."""
    key = (tuple(sorted(cells)), int(fanout))
    got = _HOLDERS.get(key)
    if got is None:
        names = key[0]
        if len(_HOLDERS) >= 4:
            _HOLDERS.pop(next(iter(_HOLDERS)))
        got = {}
        if len(names) > 1:
            ring = Ring(list(names))
            for owner in names:
                got[owner] = [c for c in ring.get_n("ledger:" + owner, min(len(names), fanout + 1))
                              if c != owner][:fanout]
        _HOLDERS[key] = got
    return got


def replicated_by(cell, cells, fanout):
    """The cells whose ledgers `cell` keeps a full replica of (ledger_holders)."""
    return sorted(o for o, hs in ledger_holders(cells, fanout).items() if cell in hs)
