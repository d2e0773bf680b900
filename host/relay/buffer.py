"""The relay's bounded store of frames waiting for the uplink.

One FIFO per local device (its endpoint), so each device's frames are replayed in the order it
sent them (the coordinator's per-(device, boot) sequence checks see an ordinary, late stream),
and one limit across all of them, in frames (a frame is at most 254 bytes). When the store is
full a new frame takes the place of the OLDEST frame of the lowest rank at or below its own:

    rank 0  TELEMETRY                                   first to go
    rank 1  everything else a device sends (HELLO, HEARTBEAT, ACK, TIME_SYNC, ERROR)
    rank 2  WITNESS                                     never evicted for a lower rank

so WITNESS records are kept over everything else; a WITNESS that finds the store full of
WITNESS records is the one dropped (the device still holds it in its own witness queue and
resends it). Every drop is counted by type (`dropped`), every stored frame too (`buffered`).
"""
import collections

from shared import protocol as P

__all__ = ["Entry", "FrameBuffer", "rank"]

_RANKS = 3


def rank(mtype):
    return 0 if mtype == P.TELEMETRY else 2 if mtype == P.WITNESS else 1


class Entry:
    """One frame on its way to the coordinator: its arrival index (relay-wide, increasing),
    type, bytes, clear header (relay/frames.py Peek), and whether it is still stored."""
    __slots__ = ("index", "type", "frame", "peek", "stored", "owner", "sends")

    def __init__(self, index, mtype, frame, peek=None):
        self.index, self.type, self.frame, self.peek = index, mtype, frame, peek
        self.sends = 0             # times sent up (the relay gives a WITNESS a bounded number)
        self.stored = False
        self.owner = None          # the _Fifo holding it


class _Fifo:
    """One endpoint's frames in arrival order. An evicted entry stays in the deque, marked not
    stored, until it reaches the front or the deque is compacted (eviction in O(1))."""
    __slots__ = ("q", "alive")

    def __init__(self):
        self.q = collections.deque()
        self.alive = 0

    def _trim(self):
        q = self.q
        while q and not q[0].stored:
            q.popleft()

    def compact(self):
        if len(self.q) > 2 * self.alive + 64:
            self.q = collections.deque(e for e in self.q if e.stored)


class FrameBuffer:
    """Per-endpoint FIFOs (_Fifo) under one limit (module docstring). push() stores an entry at the
    back of its endpoint's FIFO, restore() puts entries that were already sent (WITNESS records
    not acknowledged when the uplink was lost) back at the front, head()/pop() read a FIFO's
    oldest entry. Counters: buffered / dropped per type name, peak."""

    def __init__(self, limit):
        if limit < 1:
            raise ValueError("buffer limit must be >= 1 frame (got %r)" % (limit,))
        self.limit = limit
        self.count = 0
        self.peak = 0
        self.fifos = {}                                     # endpoint key -> deque of Entry
        self._by_rank = [collections.deque() for _ in range(_RANKS - 1)]   # eviction order
        self.buffered = collections.Counter()               # type name -> frames stored
        self.dropped = collections.Counter()                # type name -> frames dropped

    def __len__(self):
        return self.count

    def pending(self, key):
        f = self.fifos.get(key)
        return f.alive if f else 0

    def _evict_for(self, r):
        """Free one place for a frame of rank r: True when an entry of rank <= r went."""
        for lower in range(min(r, _RANKS - 2) + 1):
            d = self._by_rank[lower]
            while d:
                e = d.popleft()
                if e.stored:
                    f = e.owner
                    self._unstore(e)
                    f._trim()
                    f.compact()
                    self.dropped[P.TYPE_NAMES[e.type]] += 1
                    return True
        return False

    def _store(self, key, e, front=False):
        f = self.fifos.get(key)
        if f is None:
            f = self.fifos[key] = _Fifo()
        if front:
            f.q.appendleft(e)
        else:
            f.q.append(e)
        e.stored, e.owner = True, f
        f.alive += 1
        self.count += 1
        self.peak = max(self.peak, self.count)
        r = rank(e.type)
        if r < _RANKS - 1:
            d = self._by_rank[r]
            d.append(e)
            if len(d) > 2 * self.limit + 64:        # drop the references of entries gone
                self._by_rank[r] = collections.deque(x for x in d if x.stored)

    def _unstore(self, e):
        e.owner.alive -= 1
        e.stored, e.owner = False, None
        self.count -= 1

    def push(self, key, e):
        """Store e at the back of key's FIFO; False when it was dropped (full of higher rank)."""
        if self.count >= self.limit and not self._evict_for(rank(e.type)):
            self.dropped[P.TYPE_NAMES[e.type]] += 1
            return False
        self._store(key, e)
        self.buffered[P.TYPE_NAMES[e.type]] += 1
        return True

    def restore(self, key, entries):
        """Put already-sent entries (oldest first) back at the front of key's FIFO, in order.
        Counted as buffered; over the limit they evict like a push."""
        for e in sorted(entries, key=lambda x: x.index, reverse=True):
            if self.count >= self.limit and not self._evict_for(rank(e.type)):
                self.dropped[P.TYPE_NAMES[e.type]] += 1
                continue
            self._store(key, e, front=True)
            self.buffered[P.TYPE_NAMES[e.type]] += 1

    def head(self, key):
        f = self.fifos.get(key)
        if not f or not f.alive:
            return None
        f._trim()
        return f.q[0]

    def pop(self, key):
        e = self.head(key)
        if e is not None:
            e.owner.q.popleft()
            self._unstore(e)
        return e

    def forget(self, key):
        """Drop an endpoint's FIFO when it holds nothing."""
        f = self.fifos.get(key)
        if f is not None and not f.alive:
            del self.fifos[key]

    def stats(self):
        return {"frames": self.count, "limit": self.limit, "peak": self.peak,
                "buffered": dict(self.buffered), "dropped": dict(self.dropped)}
