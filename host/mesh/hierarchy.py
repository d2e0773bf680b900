"""T_global and live membership for a large mesh at O(1) work per cell: a tree of groups.

The versioned per-origin map (host/mesh/aggregate.py) gives every cell every other cell's value:
O(N) state and, when values change each period, O(N) messages per cell. Here the cells are cut
into level-0 groups of about `group_size` (g) cells, groups into level-1 groups of about g
groups, and so on up to one root group (docs/MESH.md "Scale"):

    level 0: G0 = ceil(N / g) groups; a cell's group = jump_hash(BLAKE2b(cell), G0)
             (Lamping & Veach: when N moves G0 by one, only 1/G0 of the cells change group)
    level l+1: G(l+1) = ceil(G(l) / g) groups; group j of level l belongs to group j // g
    root: the level with one group (levels = 1 while N <= g)

Each period a cell sends its level-0 group a signed value (T_hat, devices, version and the
anchor of a hash chain) when it moved by more than `eps` (or its device count changed), else a
heartbeat: the next link of that chain, checked by one hash. The group's **leader** is the
live member with the lowest rank (BLAKE2b of its name); it verifies its members' entries, sums
them (sum of n_P T_hat_P, sum of n_P, sum of T_hat_P, cells) and publishes that signed summary
to the parent group, where the leaders of the sibling groups hear each other (about g messages)
and elect a leader of their own, up to the root, whose leader publishes the global sum to every
cell. Per period a cell handles about g + 1 messages (a leader g more per level it leads):
independent of N. A changed value reaches T_global at every cell within (levels + 1) periods.

Membership: a level-0 leader signs its group's live members (a record) only when they change,
writes it to a key-value store (read on demand) and sends it up the tree inside its summary
until it has come back down twice (CARRY_BACK; at most CARRY_MAX periods); each leader relays
the records its children's summaries carry, the root puts them in the global sum, and each
level-0 leader hands those to its members inside its group message. So no cell hears every
group's record: a cell receives a record once or twice per real change, inside messages it
receives anyway, and a dead cell is known everywhere ttl + about levels + 1 periods after its
group stopped hearing it. A group that falls silent altogether (all its cells dead) is written
empty by the leader above it, which stops hearing its summary. Summaries, the global sum and
the group message also carry a membership digest (sum of the live cells' 64-bit hashes, mod
2^64, added up the tree like the sums): a cell whose records disagree with it for
`resync_after` seconds (it started late, a message was lost) reads the whole store once
(needs_resync; at most every RESYNC_MIN seconds).

Nothing is taken on the sender's word: entries, summaries, the global sum and membership
records are Ed25519-signed by trusted cells (`keys`), summaries and the global sum carry a
version per signer (a replay is older and dropped).

    layout = Layout(cells, group_size=16)
    tree = TreeAggregate("cell-a", layout, signing_key, keys, ttl=5.0, interval=1.0)
    tree.publish(T_hat, devices, now) -> entry    (send it to subject(0, layout.group_of(cell)))
    tree.on_value(entry, now); tree.on_summary(msg, now); tree.on_global(msg, now)
    tree.on_members(gid, record)                  (membership records read from the store)
    acts = tree.tick(now) -> Actions(publish=[(subject, msg)], members=[(gid, record)], subjects)
    tree.needs_resync(now) -> read every record of the store and give each to on_members
    tree.t_global() -> (complex, {cell: weight of the cells whose values this cell holds})
    tree.members() -> {cell: "alive" | "dead"}; tree.alive_count()
"""
import base64
import hashlib
import json
import math
import os
import time

from cryptography.exceptions import InvalidSignature

from becomingone.mesh.aggregate import AggregateError
from becomingone.mesh.ring import key_position

__all__ = ["Layout", "TreeAggregate", "Actions", "jump_hash", "subject", "group_subject",
           "GLOBAL_SUBJECT", "DEFAULT_GROUP_SIZE"]

DEFAULT_GROUP_SIZE = 16
DEFAULT_EPS = 0.01        # a new signed value when T_hat moved by more than this (else a heartbeat)
GLOBAL_SUBJECT = "bo.global"
ZERO = (0.0, 0.0, 0, 0.0, 0.0, 0)        # sum n*re, sum n*im, sum n, sum re, sum im, cells


def subject(level, gid):
    """The subject of group `gid` at `level` (values at level 0, child summaries above)."""
    return "bo.agg.%d.%d" % (level, gid)


def group_subject(gid):
    """Where the leader of level-0 group `gid` tells its members what it holds."""
    return "bo.grp.%d" % gid


def jump_hash(key, buckets):
    """Jump consistent hash (Lamping & Veach 2014): a 64-bit key -> a bucket in [0, buckets)."""
    b, j = -1, 0
    key &= 0xFFFFFFFFFFFFFFFF
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def rank(cell):
    """A cell's rank for leader elections (lowest live rank leads)."""
    return key_position("rank:" + cell)


class Layout:
    """The groups of a set of cells at every level (a pure function of the cell names and g)."""

    def __init__(self, cells, group_size=DEFAULT_GROUP_SIZE):
        if type(group_size) is not int or group_size < 2:
            raise AggregateError("group_size must be an integer >= 2, got %r" % (group_size,))
        self.g = group_size
        self.cells = sorted(set(cells))
        n = len(self.cells)
        self.counts = [max(1, math.ceil(n / group_size))]
        while self.counts[-1] > 1:
            self.counts.append(math.ceil(self.counts[-1] / group_size))
        self.top = len(self.counts) - 1
        self.rank = {c: rank(c) for c in self.cells}
        self.h64 = {c: key_position("member:" + c) for c in self.cells}   # membership digests
        self._group = {c: jump_hash(key_position("group:" + c), self.counts[0]) for c in self.cells}
        self._members = {}
        for c in sorted(self.cells, key=self.rank.get):
            self._members.setdefault(self._group[c], []).append(c)

    _cache = {}

    @classmethod
    def of(cls, cells, group_size=DEFAULT_GROUP_SIZE):
        """A Layout shared by every caller with the same cells (the cells of one process)."""
        key = (tuple(sorted(set(cells))), group_size)
        got = cls._cache.get(key)
        if got is None:
            if len(cls._cache) >= 4:
                cls._cache.pop(next(iter(cls._cache)))
            got = cls._cache[key] = cls(key[0], group_size)
        return got

    def __contains__(self, cell):
        return cell in self._group

    def group_of(self, cell):
        return self._group[cell]

    def members(self, gid):
        """The cells of level-0 group `gid`, lowest rank first."""
        return self._members.get(gid, [])

    def ancestor(self, gid0, level):
        """The level-`level` group above level-0 group gid0."""
        return gid0 // self.g ** level

    def children(self, level, gid):
        """Group ids at level-1 below group `gid` of `level` (>= 1)."""
        return range(gid * self.g, min((gid + 1) * self.g, self.counts[level - 1]))

    def groups_under(self, level, gid):
        """Level-0 group ids below group `gid` of `level`."""
        span = self.g ** level
        return range(gid * span, min((gid + 1) * span, self.counts[0]))


class Actions:
    """What a tick asks the transport to do."""
    __slots__ = ("publish", "members", "subjects")

    def __init__(self):
        self.publish = []         # (subject, message dict)
        self.members = []         # (level-0 gid, membership record dict) to write to the store
        self.subjects = set()     # subjects this cell must listen to now


def _body(msg, fields):
    return json.dumps({k: msg[k] for k in fields}, sort_keys=True, separators=(",", ":")).encode("ascii")


SUM_FIELDS = ("by", "d", "gid", "kind", "level", "s", "version")
VALUE_FIELDS = ("anchor", "by", "devices", "gid", "im", "kind", "re", "version")
CHAIN = 128               # heartbeats per hash chain (then a new signed value starts the next one)
MAX_SKIP = 64             # heartbeats a leader may have missed and still check with hashes


def _h(b):
    return hashlib.blake2b(b, digest_size=16, person=b"bo-heartbeat").digest()


class Chain:
    """A hash chain for heartbeats: anchor = H^L(seed) goes into the signed value; the k-th
    heartbeat reveals H^(L-k)(seed), which hashes to the one before, so a leader checks it with
    a hash (not a signature) and nobody who saw earlier heartbeats can make the next one."""

    def __init__(self, length=CHAIN):
        h = [os.urandom(16)]
        for _ in range(length):
            h.append(_h(h[-1]))
        self.h, self.k = h, 0
        self.anchor = h[-1]

    def next(self):
        """The next heartbeat (k, element), or None when the chain is used up."""
        if self.k >= len(self.h) - 1:
            return None
        self.k += 1
        return self.k, self.h[len(self.h) - 1 - self.k]


class _Member:
    """A leader's view of one member: its signed value, anchor and newest heartbeat."""
    __slots__ = ("msg", "seen", "ok", "anchor", "k", "h")

    def __init__(self, msg, seen, ok):
        self.msg, self.seen, self.ok = msg, seen, ok
        self.anchor = self.h = None
        self.k = 0


def check_value(m):
    """Validate the shape of a value message; raises AggregateError naming the field."""
    if not isinstance(m, dict) or m.get("kind") != "value":
        raise AggregateError("a value message has kind 'value', got %.60r" % (m,))
    for f in ("re", "im"):
        if type(m.get(f)) not in (int, float) or not math.isfinite(m[f]):
            raise AggregateError("value of %r: %s must be a finite number" % (m.get("by"), f))
    if abs(complex(m["re"], m["im"])) > 1.0 + 1e-9:
        raise AggregateError("value of %r: |T_hat| must be <= 1" % (m.get("by"),))
    if type(m.get("devices")) is not int or not 0 <= m["devices"] <= 1 << 20:
        raise AggregateError("value of %r: devices must be an int in 0..%d" % (m.get("by"), 1 << 20))
    v = m.get("version")
    if not (isinstance(v, list) and len(v) == 2 and all(type(x) is int and x >= 0 for x in v)):
        raise AggregateError("value of %r: version must be [epoch_ms, counter]" % (m.get("by"),))
    if not isinstance(m.get("anchor"), str) or len(m["anchor"]) != 32 or not isinstance(m.get("by"), str):
        raise AggregateError("value of %r: anchor must be 32 hex digits" % (m.get("by"),))
    return m
MEMBER_FIELDS = ("alive", "by", "gid", "kind", "version")
GROUP_FIELDS = ("by", "g", "gd", "gid", "kind", "live", "version")
MASK64 = (1 << 64) - 1
CARRY_BACK = 2            # a membership record rides up the tree until it came back in this many global sums
CARRY_MAX = 30            # ... or for this many periods at most (then the digest catches a miss)
MAX_CARRY = 64            # membership records in one tree message at most (the newest)
RESYNC_MIN = 60.0         # seconds between two reads of the whole membership store by one cell


def digest(cells, h64):
    """The membership digest of a set of cells: sum of their 64-bit hashes mod 2^64 (adds up the
    tree like the sums: a group's is the sum of its members', the global one of every group's)."""
    d = 0
    for c in cells:
        d += h64.get(c, 0)
    return d & MASK64


def _rec_key(rec):
    """A record's identity for skipping repeats: its whole content (a copy with another body
    under a real signature is another record, refused when read)."""
    return hashlib.blake2b(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode("utf-8"),
                           digest_size=12).digest()


def _check_record(rec):
    """A membership record fit to relay (its signature is checked where it is read)."""
    return (isinstance(rec, dict) and rec.get("kind") == "members" and type(rec.get("gid")) is int
            and isinstance(rec.get("alive"), list) and isinstance(rec.get("by"), str)
            and isinstance(rec.get("sig"), str) and isinstance(rec.get("version"), list))


def _t_of(s):
    """T_global of a sum [sum n*re, sum n*im, sum n, sum re, sum im, cells]: weighted by devices,
    or the plain mean when no cell has devices."""
    wre, wim, n, ure, uim, cells = s
    return complex(wre, wim) / n if n > 0 else (complex(ure, uim) / cells if cells > 0 else 0j)


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def _check_sum(s):
    if not (isinstance(s, list) and len(s) == 6 and all(type(x) in (int, float) and math.isfinite(x) for x in s)
            and type(s[2]) is int and type(s[5]) is int and s[2] >= 0 and s[5] >= 0):
        raise AggregateError("a summary's s must be [sum n*re, sum n*im, sum n, sum re, sum im, cells], got %.80r"
                             % (s,))
    return tuple(s)


class TreeAggregate:
    """One cell's part of the tree: its own value, its level-0 group as its leader sees it (the
    leader's signed group message), and, while it leads, its members' values, the summaries of
    the groups it hears above and the global sum; the membership records of every group. Owns
    no transport: the backend feeds it messages and carries out tick()'s Actions. Raises
    AggregateError for bad settings; bad messages are counted (`refused`) and dropped."""

    def __init__(self, cell, layout, signing_key, keys, ttl=5.0, interval=1.0, epoch_ms=None, clock=time.monotonic,
                 eps=DEFAULT_EPS, full_every=30):
        if cell not in layout:
            raise AggregateError("cell %r is not in the layout (no trust file for it?)" % (cell,))
        self.cell, self.layout, self.key, self.keys = cell, layout, signing_key, keys
        self.ttl, self.interval = float(ttl), float(interval)
        self.ttl_up = 2.0 * self.ttl          # a child group's new leader takes over within ttl
        self.grace = 1.5 * self.interval      # hear a group before speaking for it
        self.epoch = int(time.time() * 1000) if epoch_ms is None else int(epoch_ms)
        self.counter = 0
        self.eps = float(eps)
        self.started = clock()
        self.mine = None          # this cell's newest signed value message
        self.chain = None
        self.sent_full = None     # (leader it went to, when) of the last full value sent
        self.values = {}          # while leading: cell of my group -> _Member
        self.leading = None       # when this cell began to lead its level-0 group (None: it does not)
        self.grp = None           # newest verified group message of my level-0 group
        self.grp_seen = None
        self.silent_since = None  # when this cell last saw its group's leader (or started)
        self.children = {}        # level -> {child gid: [msg, seen]}
        self.versions = {}        # (kind, level, gid, by) -> newest version seen
        self.joined = {}          # level -> when this cell began to hear that level
        self.glob = None          # newest global sum message, verified (while leading)
        self.glob_seen = None
        self.groups = {}          # level-0 gid -> set of live cells (the membership records, verified)
        self.raw = {}             # level-0 gid -> newest record not yet verified
        self.written = {}         # gid -> (alive tuple, when) of our last membership write
        self.groups_version = 0   # moves whenever the membership records change
        self.rec_ver = {}         # gid -> keys of the newest records taken (repeats skipped)
        self.outbox = {}          # gid -> [our membership record, until, times seen back]: carried up
        self._glob_relayed = None # version of the last global sum whose records went to our group
        self.last_rec = {}        # gid -> (our newest record of it, when)
        self._rewrite = set()     # gids whose record we sign and send again at the next tick
        self.resync_after = 2.0 * self.ttl + (layout.top + 2) * self.interval
        self.mismatch_since = None
        self.last_resync = None
        self._vd = None           # (groups_version, digest of the membership this cell holds)
        self._gdig = {}           # gid -> digest of the newest record held of it (None: recompute)
        self._newest = {}         # gid -> key of the newest record held of it
        self.refused = 0
        self.full_every = int(full_every)    # periods between full values even when unchanged
        self.counts = {"verified": 0, "summaries": 0, "globals": 0, "groups": 0, "member_writes": 0,
                       "took_lead": 0, "stepped_down": 0, "starved": 0, "values_sent": 0, "heartbeats_sent": 0,
                       "heartbeats": 0, "hb_unusable": 0, "expired": 0, "records_in": 0, "records_carried": 0,
                       "resyncs": 0}
        self.last_tick = None
        self._alive_total = None
        self._leads = 0
        self.set_layout(layout)

    # ------------------------------------------------------------ layout
    def set_layout(self, layout):
        """A new set of cells (trust changed): groups recomputed, state of other groups dropped."""
        self.layout = layout
        self.gid0 = layout.group_of(self.cell)
        mine = set(layout.members(self.gid0))
        self.values = {c: v for c, v in self.values.items() if c in mine}
        self.children = {}
        self.joined = {}
        if self.grp is not None and self.grp.get("gid") != self.gid0:
            self.grp = self.grp_seen = None
        self.groups = {g: {c for c in s if c in layout} for g, s in self.groups.items() if g < layout.counts[0]}
        self.raw = {g: r for g, r in self.raw.items() if g < layout.counts[0]}
        self.rec_ver = {g: v for g, v in self.rec_ver.items() if g < layout.counts[0]}
        self.outbox = {g: v for g, v in self.outbox.items() if g < layout.counts[0]}
        self.resync_after = 2.0 * self.ttl + (layout.top + 2) * self.interval
        self._gdig = None
        self._alive_total = None
        self.groups_version += 1

    # ------------------------------------------------------------ signing
    def _sign(self, msg, fields):
        msg["sig"] = base64.b64encode(self.key.sign(_body(msg, fields))).decode("ascii")
        return msg

    def _verify(self, msg, fields):
        pub = self.keys.get(msg.get("by"))
        if pub is None or not isinstance(msg.get("sig"), str):
            return False
        try:
            pub.verify(base64.b64decode(msg["sig"], validate=True), _body(msg, fields))
            self.counts["verified"] += 1
            return True
        except (InvalidSignature, ValueError, KeyError, TypeError):
            return False

    def _version(self):
        self.counter += 1
        return [self.epoch, self.counter]

    def _newer(self, kind, level, gid, by, version):
        """Whether `version` is newer than every message of this signer for this slot (checked
        before the signature; recorded by _seen after it verified)."""
        if not (isinstance(version, list) and len(version) == 2 and all(type(x) is int for x in version)):
            return False
        old = self.versions.get((kind, level, gid, by))
        return old is None or tuple(version) > old

    def _seen(self, kind, level, gid, by, version):
        self.versions[(kind, level, gid, by)] = tuple(version)

    def _now(self, now):
        return time.monotonic() if now is None else now

    # ------------------------------------------------------------ inputs
    def publish(self, t_hat, devices, now=None):
        """This period's message to subject(0, gid0): a new signed value when T_hat moved by more
        than `eps` or the device count changed (or the group's leader changed, or does not list
        this cell, or every `full_every` periods), else a heartbeat of the value's hash chain."""
        now = self._now(now)
        t_hat, devices = complex(t_hat), int(devices)
        m, g = self.mine, self.grp
        leader = g["by"] if g is not None else None
        listed = g is not None and any(x[0] == self.cell for x in g["live"])
        hb = self.chain.next() if self.chain is not None else None
        if (m is None or hb is None or devices != m["devices"] or abs(t_hat - complex(m["re"], m["im"])) > self.eps
                or self.sent_full is None or self.sent_full[0] != leader or not listed
                or now - self.sent_full[1] >= self.full_every * self.interval):
            if m is None or hb is None or devices != m["devices"] or abs(t_hat - complex(m["re"], m["im"])) > self.eps:
                self.chain = Chain()
                m = self.mine = self._sign({"kind": "value", "by": self.cell, "gid": self.gid0,
                                            "version": self._version(), "re": t_hat.real, "im": t_hat.imag,
                                            "devices": devices, "anchor": self.chain.anchor.hex()}, VALUE_FIELDS)
            self.sent_full = (leader, now)
            if self.leading is not None:
                self._take_value(self.cell, m, now, True)
            self.counts["values_sent"] += 1
            if self.chain.k:                      # the value again: where its chain has got to
                m = dict(m, k=self.chain.k, h=self.chain.h[len(self.chain.h) - 1 - self.chain.k].hex())
            return m
        if self.leading is not None:
            me = self.values.get(self.cell)
            if me is not None:
                me.seen = now
        self.counts["heartbeats_sent"] += 1
        return {"kind": "hb", "by": self.cell, "v": m["version"], "k": hb[0], "h": hb[1].hex()}

    def _take_value(self, c, m, now, ok):
        mb = _Member(m, now, ok)
        mb.anchor = bytes.fromhex(m["anchor"])
        mb.k, mb.h = 0, mb.anchor
        self.values[c] = mb

    def on_value(self, m, now=None):
        """A member's value or heartbeat (heard while leading). -> True if it was new."""
        now = self._now(now)
        if self.leading is None or not isinstance(m, dict):
            return False
        o = m.get("by")
        if o == self.cell:
            return False                         # our own echo
        if o not in self.layout or self.layout.group_of(o) != self.gid0:
            self.refused += 1
            return False
        cur = self.values.get(o)
        if m.get("kind") == "hb":
            try:
                k, h = int(m["k"]), bytes.fromhex(m["h"])
            except (KeyError, TypeError, ValueError):
                self.refused += 1
                return False
            if cur is None or m.get("v") != cur.msg["version"] or not cur.k < k <= cur.k + MAX_SKIP or len(h) != 16:
                self.counts["hb_unusable"] += 1    # for a value we do not hold, old, or too far ahead
                return False
            x = h
            for _ in range(k - cur.k):
                x = _h(x)
            if x != cur.h:
                self.refused += 1                 # not the next link of this cell's chain
                return False
            cur.k, cur.h, cur.seen = k, h, now
            self.counts["heartbeats"] += 1
            return True
        try:
            check_value(m)
        except AggregateError:
            self.refused += 1
            return False
        if cur is not None and tuple(m["version"]) <= tuple(cur.msg["version"]):
            if m["version"] == cur.msg["version"] and cur.ok:
                cur.seen = now                    # the same value sent again
            return False
        self._take_value(o, m, now, False)       # verified when summed
        k = m.get("k")
        if type(k) is int and 0 < k <= CHAIN:      # a value sent again, with its chain's position
            try:
                h = bytes.fromhex(m["h"])
            except (KeyError, TypeError, ValueError):
                return True
            x = h
            for _ in range(k):
                x = _h(x)
            if x == self.values[o].anchor:
                self.values[o].k, self.values[o].h = k, h
        return True

    def on_group(self, msg, now=None):
        """The signed group message of this cell's level-0 group (its leader's: the live members
        with their values and the global sum the leader holds)."""
        now = self._now(now)
        try:
            by, live, g = msg["by"], msg["live"], msg["g"]
            ok = (msg.get("kind") == "group" and msg.get("gid") == self.gid0 and isinstance(live, list)
                  and all(isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and type(x[1]) is int
                          for x in live))
            if g is not None:
                _check_sum(g)
            gd = msg.get("gd")
            ok = ok and (gd is None or (type(gd) is int and 0 <= gd <= MASK64))
        except (KeyError, TypeError, AggregateError):
            ok = False
        if not ok or by not in self.layout or self.layout.group_of(by) != self.gid0:
            self.refused += 1
            return False
        if by == self.cell or not self._newer("group", 0, self.gid0, by, msg.get("version")):
            return False
        same = (self.grp is not None and self.grp["by"] == by and self.grp["live"] == live
                and self.grp["g"] == g and self.grp.get("gd") == msg.get("gd"))
        if not same and not self._verify(msg, GROUP_FIELDS):
            self.refused += 1
            return False
        self._seen("group", 0, self.gid0, by, msg["version"])
        self.grp, self.grp_seen = msg, now
        self.counts["groups"] += 1
        self._take_records(msg.get("m"))
        return True

    def _take_records(self, recs):
        """Membership records that rode the tree (each signed by its writer, checked when read)."""
        for rec in self._records(recs):
            self.on_members(rec["gid"], rec)

    @staticmethod
    def _records(recs):
        """The relayable records of a message's "m" (shape only; signatures are checked by readers)."""
        if not isinstance(recs, list):
            return ()
        return [r for r in recs[:MAX_CARRY] if _check_record(r)]

    def on_summary(self, msg, now=None):
        """A child group's signed summary, heard on a level >= 1 subject."""
        now = self._now(now)
        try:
            level, gid, by = int(msg["level"]), int(msg["gid"]), msg["by"]
            _check_sum(msg["s"])
        except (KeyError, TypeError, ValueError, AggregateError):
            self.refused += 1
            return False
        d = msg.get("d")
        if (msg.get("kind") != "sum" or not 0 <= level < self.layout.top or by not in self.layout
                or type(d) is not int or not 0 <= d <= MASK64):
            self.refused += 1
            return False
        if not self._newer("sum", level, gid, by, msg.get("version")):
            return False
        old = self.children.get(level + 1, {}).get(gid)
        same = old is not None and old[0]["by"] == by and old[0]["s"] == msg["s"] and old[0].get("d") == msg.get("d")
        if by != self.cell and not same and not self._verify(msg, SUM_FIELDS):
            self.refused += 1
            return False
        self._seen("sum", level, gid, by, msg["version"])
        self.children.setdefault(level + 1, {})[gid] = [msg, now]
        self.counts["summaries"] += 1
        return True

    def on_global(self, msg, now=None):
        """The root leader's global sum (heard while leading a level-0 group)."""
        now = self._now(now)
        try:
            s, by = _check_sum(msg["s"]), msg["by"]
        except (KeyError, TypeError, AggregateError):
            self.refused += 1
            return False
        d = msg.get("d")
        if msg.get("kind") != "global" or by not in self.layout or type(d) is not int or not 0 <= d <= MASK64:
            self.refused += 1
            return False
        if not self._newer("global", -1, 0, by, msg.get("version")):
            return False
        same = (self.glob is not None and self.glob["by"] == by and tuple(self.glob["s"]) == s
                and self.glob.get("d") == msg.get("d"))
        if by != self.cell and not same and not self._verify(msg, SUM_FIELDS):
            self.refused += 1
            return False
        self._seen("global", -1, 0, by, msg["version"])
        self.glob, self.glob_seen = msg, now
        self.counts["globals"] += 1
        return True

    def on_members(self, gid, rec, stored=False):
        """A membership record (key = level-0 gid), from the tree or read from the store
        (`stored`: the store holds each group's newest write, so it is taken even if this cell
        had it before and something older came after): kept as it came and verified when it is
        first read (alive_cells / is_alive), so a burst of changes (a mesh starting) costs a cell
        only the records it looks at. -> False if it cannot be one or was had already."""
        if not (isinstance(rec, dict) and rec.get("kind") == "members" and rec.get("gid") == gid
                and 0 <= gid < self.layout.counts[0]):
            self.refused += 1
            return False
        try:
            key = _rec_key(rec)
        except (TypeError, ValueError):
            self.refused += 1
            return False
        seen = self.rec_ver.setdefault(gid, [])
        if key in seen and (not stored or self._newest.get(gid) == key):
            return False                         # had it (a record rides the tree for a few periods)
        if key not in seen:
            seen.append(key)
            del seen[:-8]
        self.counts["records_in"] += 1
        pend = self.raw.setdefault(gid, [])
        if stored:
            pend.clear()
        pend.append(rec)
        self._newest[gid] = key
        if self._gdig is not None:
            self._gdig[gid] = self._rec_digest(gid, rec)
        del pend[:-4]                            # the newest few: a forged one cannot hide a real one
        self._alive_total = None
        self.groups_version += 1
        return True

    def _rec_digest(self, gid, rec):
        alive = rec.get("alive")
        if not isinstance(alive, list):
            return 0
        lay = self.layout
        return digest([c for c in alive if isinstance(c, str) and c in lay and lay.group_of(c) == gid], lay.h64)

    def _group(self, gid):
        """The verified live set of level-0 group gid (from its newest valid record)."""
        pend = self.raw.pop(gid, ())
        if pend and not self._verify_one(gid, pend):
            if self._gdig is not None:                   # the newest did not verify
                self._gdig[gid] = digest(self.groups.get(gid, ()), self.layout.h64)
            self.groups_version += 1
        return self.groups.get(gid, set())

    def _verify_one(self, gid, pend):
        """Apply the newest of `pend` that verifies -> whether the newest one did."""
        for i, rec in enumerate(reversed(pend)):
            try:
                alive, by = rec["alive"], rec["by"]
                ok = isinstance(alive, list) and all(isinstance(c, str) for c in alive) and by in self.layout
            except (KeyError, TypeError):
                ok = False
            if ok and self._verify(rec, MEMBER_FIELDS):     # ours too: ours come back known
                self.groups[gid] = {c for c in alive if c in self.layout and self.layout.group_of(c) == gid}
                return i == 0
            self.refused += 1
        return False

    def is_alive(self, cell):
        """Whether `cell`'s group record lists it (one record verified at most)."""
        if cell == self.cell:
            return True
        if cell not in self.layout:
            return False
        return cell in self._group(self.layout.group_of(cell))

    # ------------------------------------------------------------ who leads level 0
    def _should_lead(self, now):
        """Lead when the leader's group message lists this cell as its lowest-ranked live member
        (a lower rank takes over), or when the group has been silent for ttl plus 2 periods per
        live member ranked below this one (they would have taken over first)."""
        rank = self.layout.rank
        me = rank[self.cell]
        g = self.grp
        if g is not None and now - self.grp_seen < self.ttl:
            live = [x[0] for x in g["live"] if x[0] in rank]
            return me < rank[g["by"]] and all(me <= rank[c] for c in live)
        since = self.grp_seen if g is not None else self.started
        if g is not None:
            ahead = sum(1 for x in g["live"] if x[0] in rank and x[0] != g["by"] and rank[x[0]] < me)
        else:
            ahead = sum(1 for c in self.layout.members(self.gid0) if rank[c] < me)
        return now - since >= self.ttl + ahead * 2.0 * self.interval

    def _lead_or_not(self, now):
        if self.leading is None:
            if self._should_lead(now):
                self.leading = now
                self.values = {}
                if self.mine is not None:
                    self._take_value(self.cell, self.mine, now, True)
                self.counts["took_lead"] += 1
        else:
            g = self.grp
            if (g is not None and now - self.grp_seen < self.ttl and g["by"] != self.cell
                    and self.layout.rank[g["by"]] < self.layout.rank[self.cell]):
                self.leading = None               # a lower rank leads: step down
                self.values, self.children, self.joined = {}, {}, {}
                self.glob = self.glob_seen = None
                self.counts["stepped_down"] += 1

    def leader0(self, now=None):
        """Who leads this cell's level-0 group, as far as this cell knows (None: nobody heard)."""
        now = self._now(now)
        if self.leading is not None:
            return self.cell
        if self.grp is not None and now - self.grp_seen < self.ttl:
            return self.grp["by"]
        return None

    # ------------------------------------------------------------ the period
    def _group_sum(self, now):
        """Leader of level 0: verify the fresh values, -> (sum tuple, live [[cell, devices]])."""
        s, live = ZERO, []
        for c, mb in sorted(self.values.items()):
            if now - mb.seen >= self.ttl:
                continue
            e = mb.msg
            if not mb.ok:
                if not self._verify(e, VALUE_FIELDS):
                    self.refused += 1
                    del self.values[c]
                    continue
                mb.ok = True
            n, re, im = e["devices"], e["re"], e["im"]
            s = _add(s, (n * re, n * im, n, re, im, 1))
            live.append([c, n])
        return s, live

    def _starved(self, now):
        """After a gap of more than ttl/2 in this cell's own periods (an overloaded machine:
        messages waited in the socket, not the others' fault) the clocks of silence are moved by
        the gap: nobody is declared dead or silent for the time this cell itself did not look."""
        last, self.last_tick = self.last_tick, now
        if last is None or now - last <= self.interval + self.ttl / 2:
            return                                 # a period late by less than ttl/2: no excuse needed
        gap = now - last - self.interval
        self.counts["starved"] += 1
        for mb in self.values.values():
            mb.seen += gap
        for kids in self.children.values():
            for v in kids.values():
                v[1] += gap
        for k in list(self.joined):
            self.joined[k] += gap
        if self.grp_seen is not None:
            self.grp_seen += gap
        if self.glob_seen is not None:
            self.glob_seen += gap
        if self.mismatch_since is not None:
            self.mismatch_since += gap
        self.started += gap

    def tick(self, now=None):
        """Run this cell's roles for one period -> Actions."""
        now = self._now(now)
        self._starved(now)
        lay, acts = self.layout, Actions()
        acts.subjects.add(group_subject(self.gid0))
        self._leads = 0
        self._lead_or_not(now)
        if self.leading is None:
            self.joined, self.children = {}, {}
            return acts
        acts.subjects.add(subject(0, self.gid0))
        acts.subjects.add(GLOBAL_SUBJECT)
        for c in [c for c, mb in self.values.items() if now - mb.seen >= self.ttl_up]:
            del self.values[c]
        if now - self.leading < self.grace:
            # hear the members first; meanwhile say who leads now (they send their values again)
            # with what the group last knew
            old = self.grp if self.grp is not None and self.grp["by"] != self.cell else None
            gm = self._sign({"kind": "group", "gid": self.gid0, "by": self.cell, "version": self._version(),
                             "live": old["live"] if old is not None else [],
                             "g": old["g"] if old is not None else None,
                             "gd": old.get("gd") if old is not None else None}, GROUP_FIELDS)
            acts.publish.append((group_subject(self.gid0), gm))
            if old is None:
                self.grp, self.grp_seen = gm, now
            return acts
        s, live = self._group_sum(now)
        d = digest([x[0] for x in live], lay.h64)
        self._members_write(self.gid0, sorted(x[0] for x in live), now, acts)
        relayed = {}              # membership records heard from the groups this cell leads above 0
        level, gid = 0, self.gid0
        while True:
            self._leads = level + 1
            if level == lay.top:
                msg = self._sign({"kind": "global", "level": level, "gid": gid, "by": self.cell,
                                  "version": self._version(), "s": list(s), "d": d}, SUM_FIELDS)
                acts.publish.append((GLOBAL_SUBJECT, msg))
                self.glob, self.glob_seen = msg, now      # ours: taken at once
                break
            up = level + 1
            parent = lay.ancestor(self.gid0, up)
            msg = self._sign({"kind": "sum", "level": level, "gid": gid, "by": self.cell,
                              "version": self._version(), "s": list(s), "d": d}, SUM_FIELDS)
            acts.publish.append((subject(up, parent), msg))
            acts.subjects.add(subject(up, parent))
            kids = self.children.setdefault(up, {})
            kids[gid] = [msg, now]
            joined = self.joined.setdefault(up, now)
            for g in [g for g, (_m, seen) in kids.items() if now - seen >= self.ttl_up]:
                del kids[g]
            # lead the parent group too? the lowest rank among the leaders heard there lately
            heard = [m["by"] for m, seen in kids.values() if now - seen < self.ttl]
            if now - joined < self.grace or min(heard, key=lay.rank.get) != self.cell:
                break
            s, d = ZERO, 0
            for _g, (m, seen) in sorted(kids.items()):    # a child being re-elected keeps its last sum
                s = _add(s, tuple(m["s"]))
                d += m["d"]
                if m["by"] != self.cell and now - seen < self.grace:   # heard this period: relay
                    for rec in self._records(m.get("m")):
                        relayed[rec["gid"]] = rec
            d &= MASK64
            if now - joined >= self.ttl_up:              # a child silent for ttl_up: its cells are dead
                for child in lay.children(up, parent):
                    if child not in kids:
                        for g0 in lay.groups_under(level, child):
                            if self._group(g0):
                                self._members_write(g0, [], now, acts)
            level, gid = up, parent
        # membership records ride up on the last message this cell sends (to the group above the
        # highest it leads, or the global sum): its own for CARRY periods, and those its children
        # carry; the root's global sum hands them to every level-0 leader, which hands them to
        # its members in the group message. No cell hears every group's record otherwise.
        carry = {}
        for g0, (rec, until, _back) in list(self.outbox.items()):
            if now >= until:
                del self.outbox[g0]
            else:
                carry[g0] = rec
        carry.update(relayed)
        if carry:
            msg["m"] = [carry[k] for k in sorted(carry)][-MAX_CARRY:]
            self.counts["records_carried"] += len(msg["m"])
        for lv in [lv for lv in self.joined if lv > level + 1]:
            del self.joined[lv]
        for lv in [lv for lv in self.children if lv not in self.joined]:
            del self.children[lv]
        # the group message: who is live (with their device counts) and the global sum as this
        # leader holds it; the sum it sent before is kept while T_global moved by less than eps/10
        # and no cell or device came or went, so its members re-verify only when it matters
        gl = self.glob if self.glob is not None and now - self.glob_seen < self.ttl_up else None
        g = list(gl["s"]) if gl is not None else None
        gd = gl.get("d") if gl is not None else None
        prev = self.grp["g"] if self.grp is not None and self.grp["by"] == self.cell else None
        if g is not None and prev is not None and g[2] == prev[2] and g[5] == prev[5] \
                and abs(_t_of(g) - _t_of(prev)) <= self.eps / 10:
            g = prev
        gm = self._sign({"kind": "group", "gid": self.gid0, "by": self.cell, "version": self._version(),
                         "live": live, "g": g, "gd": gd}, GROUP_FIELDS)
        # the records the newest global sum carries, once per global sum: taken here, and to the members
        recs = self._records(gl.get("m")) if gl is not None else ()
        if recs and self._glob_relayed != gl["version"]:
            self._glob_relayed = gl["version"]
            for rec in recs:
                self.on_members(rec["gid"], rec)
                out = self.outbox.get(rec["gid"])
                if out is not None and out[0]["sig"] == rec["sig"]:
                    out[2] += 1                    # ours came back down: carried far enough
                    if out[2] >= CARRY_BACK:
                        del self.outbox[rec["gid"]]
            gm["m"] = recs
        acts.publish.append((group_subject(self.gid0), gm))
        self.grp, self.grp_seen = gm, now
        return acts

    def rewrite(self, gid):
        """Sign and send this group's record again at the next tick (the store was found holding
        another: a slower writer's put landed after ours)."""
        self._rewrite.add(gid)
        self.written.pop(gid, None)

    def last_record(self, gid):
        """(our newest record of group gid, when we wrote it) or (None, None)."""
        return self.last_rec.get(gid, (None, None))

    def _members_write(self, gid, alive, now, acts):
        have = sorted(self._group(gid))
        last = self.written.get(gid)
        if gid not in self._rewrite and (
                have == alive or (last is not None and last[0] == tuple(alive) and now - last[1] < self.ttl)):
            return
        self._rewrite.discard(gid)
        rec = self._sign({"kind": "members", "gid": gid, "alive": alive, "by": self.cell,
                          "version": self._version()}, MEMBER_FIELDS)
        self.written[gid] = (tuple(alive), now)
        self.groups[gid] = set(alive)            # ours: applied at once
        self.raw.pop(gid, None)
        self._newest[gid] = _rec_key(rec)
        if self._gdig is not None:
            self._gdig[gid] = digest(alive, self.layout.h64)
        seen = self.rec_ver.setdefault(gid, [])
        seen.append(self._newest[gid])           # when it comes back down the tree: known
        del seen[:-8]
        self.outbox[gid] = [rec, now + CARRY_MAX * self.interval, 0]
        self.last_rec[gid] = (rec, now)
        self._alive_total = None
        self.groups_version += 1
        self.counts["member_writes"] += 1
        acts.members.append((gid, rec))

    # ------------------------------------------------------------ reads
    def t_global(self, now=None):
        """(T_global, {cell: weight}) from the global sum in the newest group message (the
        leader's own); weights for the cells of this cell's group: w_P = n_P / sum n."""
        g = self.grp
        if g is None or g["g"] is None:
            return 0j, {}
        _wre, _wim, n, _ure, _uim, cells = g["g"]
        w = {x[0]: (x[1] / n if n > 0 else (1.0 / cells if cells > 0 else 0.0)) for x in g["live"]}
        return _t_of(g["g"]), w

    def global_cells(self):
        """Cells the newest global sum covers (live cells that published a value)."""
        g = self.grp
        return g["g"][5] if g is not None and g["g"] is not None else 0

    @property
    def entries(self):
        """{cell: {"re", "im", "devices"}} of this cell's group while it leads it (a member holds
        only the device counts its leader lists)."""
        if self.leading is None:
            return {}
        now = time.monotonic()
        return {c: {"origin": c, "re": mb.msg["re"], "im": mb.msg["im"], "devices": mb.msg["devices"]}
                for c, mb in self.values.items() if mb.ok and now - mb.seen < self.ttl}

    def alive_cells(self):
        """Every cell a membership record lists as live (records verified as they are read)."""
        out = set()
        for gid in list(self.raw):
            self._group(gid)
        for s in self.groups.values():
            out |= s
        out.add(self.cell)
        return out

    def alive_count(self):
        """Cells alive: the count the global sum carries (the same at every cell, O(1)); before
        one arrived, the membership records'."""
        g = self.grp
        if g is not None and g["g"] is not None and g["g"][5] > 0:
            return g["g"][5]
        if self._alive_total is None:
            self._alive_total = len(self.alive_cells())
        return self._alive_total

    def view_digest(self):
        """The membership digest of the newest record this cell holds of each group (compare:
        the global sum's). Not verified here: a mismatch only makes the cell read the store;
        records are verified where they are read (alive_cells, is_alive)."""
        if self._vd is None or self._vd[0] != self.groups_version:
            if self._gdig is None:
                lay = self.layout
                self._gdig = {g: digest(st, lay.h64) for g, st in self.groups.items()}
                for g, pend in self.raw.items():
                    if pend:
                        self._gdig[g] = self._rec_digest(g, pend[-1])
            self._vd = (self.groups_version, sum(self._gdig.values()) & MASK64)
        return self._vd[1]

    def needs_resync(self, now=None):
        """Whether this cell should read the whole membership store now: the records it holds
        have disagreed with the global sum's digest for resync_after seconds (a record it
        missed: it started late, a message was lost), at most once per RESYNC_MIN seconds."""
        now = self._now(now)
        g = self.grp
        want = g.get("gd") if g is not None and now - self.grp_seen < self.ttl else None
        if want is None or self.view_digest() == want:
            self.mismatch_since = None
            return False
        if self.mismatch_since is None:
            self.mismatch_since = now
        if now - self.mismatch_since < self.resync_after or (
                self.last_resync is not None and now - self.last_resync < RESYNC_MIN):
            return False
        self.last_resync, self.mismatch_since = now, None
        self.counts["resyncs"] += 1
        return True

    def members(self):
        alive = self.alive_cells()
        return {c: ("alive" if c in alive else "dead") for c in self.layout.cells}

    def leads(self):
        """Levels this cell led in the last tick (0 = none)."""
        return self._leads
