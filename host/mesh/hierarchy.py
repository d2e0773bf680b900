"""T_global and live membership for a large mesh at O(1) work per cell: a tree of groups.

The versioned per-origin map (host/mesh/aggregate.py) gives every cell every other cell's value:
O(N) state and, when values change each period, O(N) messages per cell. Here the cells are cut
into level-0 groups of about `group_size` (g) cells, groups into level-1 groups of about g
groups, and so on up to one root group (docs/MESH.md "Scale"):

    level 0: G0 = ceil(N / g) groups; a cell's group = jump_hash(BLAKE2b(cell), G0)
             (Lamping & Veach: when N moves G0 by one, only 1/G0 of the cells change group)
    level l+1: G(l+1) = ceil(G(l) / g) groups; group j of level l belongs to group j // g
    root: the level with one group (levels = 1 while N <= g)

Each period a cell publishes its signed value (a VersionedAggregate entry: T_hat, devices,
version) to its level-0 group (it hears the others: ~g messages). The group's **leader** is the
live member with the lowest rank (BLAKE2b of its name); it verifies its members' entries, sums
them (sum of n_P T_hat_P, sum of n_P, sum of T_hat_P, cells) and publishes that signed summary
to the parent group, where the leaders of the sibling groups hear each other (about g messages)
and elect a leader of their own, up to the root, whose leader publishes the global sum to every
cell. Per period a cell handles about g + 1 messages (a leader g more per level it leads):
independent of N. A changed value reaches T_global at every cell within (levels + 1) periods.

Membership: a level-0 leader writes its group's live members (signed) to a key-value store only
when they change; every cell watches the store, so a dead cell is known everywhere one write
after its group stops hearing it (`ttl`). A group that falls silent altogether (all its cells
dead) is written empty by the leader above it, which stops hearing its summary.

Nothing is taken on the sender's word: entries, summaries, the global sum and membership
records are Ed25519-signed by trusted cells (`keys`), summaries and the global sum carry a
version per signer (a replay is older and dropped).

    layout = Layout(cells, group_size=16)
    tree = TreeAggregate("cell-a", layout, signing_key, keys, ttl=5.0, interval=1.0)
    tree.publish(T_hat, devices, now) -> entry    (send it to subject(0, layout.group_of(cell)))
    tree.on_value(entry, now); tree.on_summary(msg, now); tree.on_global(msg, now)
    tree.on_members(gid, record)                  (membership records from the store)
    acts = tree.tick(now) -> Actions(publish=[(subject, msg)], members=[(gid, record)], subjects)
    tree.t_global() -> (complex, {cell: weight of the cells whose values this cell holds})
    tree.members() -> {cell: "alive" | "dead"}; tree.alive_count()
"""
import base64
import json
import math
import time

from cryptography.exceptions import InvalidSignature

from becomingone.mesh.aggregate import AggregateError, VersionedAggregate, check_entry
from becomingone.mesh.ring import key_position

__all__ = ["Layout", "TreeAggregate", "Actions", "jump_hash", "subject", "GLOBAL_SUBJECT",
           "DEFAULT_GROUP_SIZE"]

DEFAULT_GROUP_SIZE = 16
GLOBAL_SUBJECT = "bo.global"
ZERO = (0.0, 0.0, 0, 0.0, 0.0, 0)        # sum n*re, sum n*im, sum n, sum re, sum im, cells


def subject(level, gid):
    """The subject of group `gid` at `level` (values at level 0, child summaries above)."""
    return "bo.agg.%d.%d" % (level, gid)


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
        self._group = {c: jump_hash(key_position("group:" + c), self.counts[0]) for c in self.cells}
        self._members = {}
        for c in sorted(self.cells, key=self.rank.get):
            self._members.setdefault(self._group[c], []).append(c)

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


SUM_FIELDS = ("by", "gid", "kind", "level", "s", "version")
MEMBER_FIELDS = ("alive", "by", "gid", "kind", "version")


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def _check_sum(s):
    if not (isinstance(s, list) and len(s) == 6 and all(type(x) in (int, float) and math.isfinite(x) for x in s)
            and type(s[2]) is int and type(s[5]) is int and s[2] >= 0 and s[5] >= 0):
        raise AggregateError("a summary's s must be [sum n*re, sum n*im, sum n, sum re, sum im, cells], got %.80r"
                             % (s,))
    return tuple(s)


class TreeAggregate:
    """One cell's part of the tree: its level-0 group's values, the summaries of the groups it
    hears as a leader, the latest global sum and the membership records. Owns no transport:
    the backend feeds it messages and carries out tick()'s Actions. Raises AggregateError for
    bad settings; bad messages are counted (`refused`) and dropped."""

    def __init__(self, cell, layout, signing_key, keys, ttl=5.0, interval=1.0, epoch_ms=None, clock=time.monotonic):
        if cell not in layout:
            raise AggregateError("cell %r is not in the layout (no trust file for it?)" % (cell,))
        self.cell, self.layout, self.key, self.keys = cell, layout, signing_key, keys
        self.ttl, self.interval = float(ttl), float(interval)
        self.ttl_up = 2.0 * self.ttl          # a child group's new leader takes over within ttl
        self.grace = 1.5 * self.interval      # hear a group before speaking for it
        self.own = VersionedAggregate(cell, signing_key=signing_key, keys=keys, ttl=self.ttl,
                                      epoch_ms=epoch_ms)
        self.epoch, self.counter = self.own.epoch, 0
        self.started = clock()
        self.values = {}          # cell of my group -> [entry, seen, verified]
        self.children = {}        # level -> {child gid: [msg, seen]}
        self.versions = {}        # (kind, level, gid, by) -> newest version seen
        self.joined = {}          # level -> when this cell began to hear that level
        self.glob = None          # newest global message, verified
        self.glob_seen = None
        self.groups = {}          # level-0 gid -> set of live cells (the membership records)
        self.written = {}         # gid -> (alive tuple, when) of our last membership write
        self.groups_version = 0   # moves whenever the membership records change
        self.refused = 0
        self.counts = {"verified": 0, "summaries": 0, "globals": 0, "member_writes": 0}
        self._alive_total = None
        self.groups_version += 1
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
        self.groups = {g: {c for c in s if c in layout} for g, s in self.groups.items() if g < layout.counts[0]}
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

    # ------------------------------------------------------------ inputs
    def publish(self, t_hat, devices, now=None):
        """This cell's value for this period (a signed VersionedAggregate entry)."""
        now = self._now(now)
        e = self.own.publish(t_hat, devices, now)
        self.values[self.cell] = [e, now, True]
        return e

    def on_value(self, e, now=None):
        """A level-0 message (a member's signed entry). -> True if it was new."""
        now = self._now(now)
        try:
            check_entry(e)
        except AggregateError:
            self.refused += 1
            return False
        o = e["origin"]
        if o == self.cell:
            return False                         # our own echo (or someone posing as us)
        if o not in self.layout or self.layout.group_of(o) != self.gid0:
            self.refused += 1
            return False
        cur = self.values.get(o)
        if cur is not None and tuple(e["version"]) <= tuple(cur[0]["version"]):
            return False
        self.values[o] = [e, now, False]         # verified when a leader uses it
        return True

    def on_summary(self, msg, now=None):
        """A child group's signed summary, heard on a level >= 1 subject."""
        now = self._now(now)
        try:
            level, gid, by = int(msg["level"]), int(msg["gid"]), msg["by"]
            _check_sum(msg["s"])
        except (KeyError, TypeError, ValueError, AggregateError):
            self.refused += 1
            return False
        if msg.get("kind") != "sum" or not 0 <= level < self.layout.top or by not in self.layout:
            self.refused += 1
            return False
        if not self._newer("sum", level, gid, by, msg.get("version")):
            return False
        if by != self.cell and not self._verify(msg, SUM_FIELDS):
            self.refused += 1
            return False
        self._seen("sum", level, gid, by, msg["version"])
        self.children.setdefault(level + 1, {})[gid] = [msg, now]
        self.counts["summaries"] += 1
        return True

    def on_global(self, msg, now=None):
        """The root leader's global sum."""
        now = self._now(now)
        try:
            s, by = _check_sum(msg["s"]), msg["by"]
        except (KeyError, TypeError, AggregateError):
            self.refused += 1
            return False
        if msg.get("kind") != "global" or by not in self.layout:
            self.refused += 1
            return False
        if not self._newer("global", -1, 0, by, msg.get("version")):
            return False
        same = self.glob is not None and self.glob["by"] == by and tuple(self.glob["s"]) == s
        if by != self.cell and not same and not self._verify(msg, SUM_FIELDS):
            self.refused += 1
            return False
        self._seen("global", -1, 0, by, msg["version"])
        self.glob, self.glob_seen = msg, now
        self.counts["globals"] += 1
        return True

    def on_members(self, gid, rec):
        """A membership record from the store (key = level-0 gid). -> True if applied."""
        try:
            alive, by = rec["alive"], rec["by"]
            ok = (rec.get("kind") == "members" and rec.get("gid") == gid and isinstance(alive, list)
                  and all(isinstance(c, str) for c in alive))
        except (KeyError, TypeError):
            ok = False
        if not ok or by not in self.layout or not 0 <= gid < self.layout.counts[0]:
            self.refused += 1
            return False
        if by != self.cell and not self._verify(rec, MEMBER_FIELDS):
            self.refused += 1
            return False
        self.groups[gid] = {c for c in alive if c in self.layout and self.layout.group_of(c) == gid}
        self._alive_total = None
        self.groups_version += 1
        return True

    # ------------------------------------------------------------ the period
    def _now(self, now):
        return time.monotonic() if now is None else now

    def _group_sum(self, now):
        """Leader of level 0: verify the fresh entries, -> (sum tuple, live cells)."""
        s, live = ZERO, []
        for c, v in self.values.items():
            e, seen, ok = v
            if now - seen >= self.ttl:
                continue
            if not ok:
                if not self.own.verify(e):
                    self.refused += 1
                    continue
                v[2] = ok = True
                self.counts["verified"] += 1
            n, re, im = e["devices"], e["re"], e["im"]
            s = _add(s, (n * re, n * im, n, re, im, 1))
            live.append(c)
        return s, live

    def leader0(self, now=None):
        """The live member of this cell's level-0 group with the lowest rank (heard within ttl)."""
        now = self._now(now)
        live = [c for c, v in self.values.items() if now - v[1] < self.ttl] + [self.cell]
        return min(live, key=self.layout.rank.get)

    def tick(self, now=None):
        """Run this cell's roles for one period -> Actions."""
        now = self._now(now)
        lay, acts = self.layout, Actions()
        acts.subjects.add(subject(0, self.gid0))
        acts.subjects.add(GLOBAL_SUBJECT)
        self._leads = 0
        if now - self.started < self.grace or self.leader0(now) != self.cell:
            self.joined, self.children = {}, {}
            return acts
        s, live = self._group_sum(now)
        self._members_write(self.gid0, sorted(live), now, acts)
        level, gid = 0, self.gid0
        while True:
            self._leads = level + 1
            if level == lay.top:
                msg = self._sign({"kind": "global", "level": level, "gid": gid, "by": self.cell,
                                  "version": self._version(), "s": list(s)}, SUM_FIELDS)
                acts.publish.append((GLOBAL_SUBJECT, msg))
                self.glob, self.glob_seen = msg, now      # ours: taken at once
                break
            up = level + 1
            parent = lay.ancestor(self.gid0, up)
            msg = self._sign({"kind": "sum", "level": level, "gid": gid, "by": self.cell,
                              "version": self._version(), "s": list(s)}, SUM_FIELDS)
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
            s = ZERO
            for m, _seen in kids.values():                # a child being re-elected keeps its last sum
                s = _add(s, tuple(m["s"]))
            if now - joined >= self.ttl_up:              # a child silent for ttl_up: its cells are dead
                for child in lay.children(up, parent):
                    if child not in kids:
                        for g0 in lay.groups_under(level, child):
                            if self.groups.get(g0):
                                self._members_write(g0, [], now, acts)
            level, gid = up, parent
        for lv in [lv for lv in self.joined if lv > level + 1]:
            del self.joined[lv]
        for lv in [lv for lv in self.children if lv not in self.joined]:
            del self.children[lv]
        return acts

    def _members_write(self, gid, alive, now, acts):
        have = sorted(self.groups.get(gid, ()))
        last = self.written.get(gid)
        if have == alive or (last is not None and last[0] == tuple(alive) and now - last[1] < self.ttl):
            return
        rec = self._sign({"kind": "members", "gid": gid, "alive": alive, "by": self.cell,
                          "version": self._version()}, MEMBER_FIELDS)
        self.written[gid] = (tuple(alive), now)
        self.groups[gid] = set(alive)            # ours: applied at once (the store echoes it)
        self._alive_total = None
        self.groups_version += 1
        self.counts["member_writes"] += 1
        acts.members.append((gid, rec))

    # ------------------------------------------------------------ reads
    def t_global(self, now=None):
        """(T_global, {cell: weight}) from the newest global sum; weights are given for the
        cells of this cell's group (the only values it holds): w_P = n_P / sum n."""
        g = self.glob
        if g is None:
            return 0j, {}
        wre, wim, n, ure, uim, cells = g["s"]
        t = complex(wre, wim) / n if n > 0 else (complex(ure, uim) / cells if cells > 0 else 0j)
        now = self._now(now)
        w = {}
        for c, (e, seen, _ok) in self.values.items():
            if now - seen < self.ttl:
                w[c] = e["devices"] / n if n > 0 else (1.0 / cells if cells > 0 else 0.0)
        return t, w

    def global_cells(self):
        """Cells the newest global sum covers (live cells that published a value)."""
        return self.glob["s"][5] if self.glob is not None else 0

    @property
    def entries(self):
        """{cell: entry} of the live values this cell holds (its group)."""
        now = time.monotonic()
        return {c: e for c, (e, seen, _ok) in self.values.items() if now - seen < self.ttl}

    def alive_cells(self):
        out = set()
        for s in self.groups.values():
            out |= s
        out.add(self.cell)
        return out

    def alive_count(self):
        if self._alive_total is None:
            self._alive_total = len(self.alive_cells())
        return self._alive_total

    def members(self):
        alive = self.alive_cells()
        return {c: ("alive" if c in alive else "dead") for c in self.layout.cells}

    def leads(self):
        """Levels this cell led in the last tick (0 = none)."""
        return self._leads
