"""Device sessions: one per (device id, boot id).

A HELLO from a boot id the device has not used opens a new session (the previous boot is
retired); a frame of another type from an unknown boot id also opens one (the device rebooted
and its HELLO was lost, or the host restarted), without HELLO details until one arrives.
Frames from a *retired* boot id of a device -- replays of an earlier boot -- are refused with
reason "stale_boot". Retired boot ids are kept in a bounded set per device (`max_old_boots`,
default 32, oldest forgotten first; a genuine reboot picks a random 16-bit boot id, so the
chance that it collides with a retired one is <= 32/65535 and such a device is seen again at
its next reboot). The set persists in the data folder (sessions.json) across host restarts.

Sequence numbers: frames after the highest seen add `seq - highest - 1` to `lost`; a frame
at or below the highest is a `duplicate` when already seen (refused, so it is never integrated
twice) or `reordered` when it fills a hole within the last `window` (64) numbers (accepted,
`lost` decremented). Older than the window: refused as duplicate-or-stale ("old_seq").
"""
import collections
import json
import os
import time

from becomingone.devices.lateness import LatenessHistogram
from becomingone.devices.timesync import ClockEstimator
from becomingone.util.atomic import write_json
from shared import protocol as P

__all__ = ["Session", "Sessions", "SEQ_WINDOW", "host_seq_after"]

SEQ_WINDOW = 64
_MASK = (1 << SEQ_WINDOW) - 1


def host_seq_after(prev=None, now=None):
    """The seq of the host's next frame to a (device, boot): the larger of prev + 1 and the
    wall clock in 0.1 s units (mod 2^30). A restarted host (prev=None) thus starts above every
    seq it used before the restart, and the device's replay window accepts it (PROTOCOL.md §4).
    More than 10 frames per 0.1 s simply run ahead of the clock."""
    clock = int((time.time() if now is None else now) * 10) & (P.SEQ_LIMIT - 1)
    nxt = clock if prev is None else max(prev + 1, clock)
    return nxt if nxt < P.SEQ_LIMIT else clock


class Session:
    """What the host knows about one boot of one device: its HELLO, sequence window (lost,
    duplicates, reordered), counters, clock estimate, the link and address to reply to, the host's
    own seq for it, its last TELEMETRY record. `extra` holds what status shows besides (last
    HEARTBEAT, last ERROR, a Master stream error). Raises nothing."""

    __slots__ = ("device_id", "boot_id", "hello", "opened", "last_seen", "frames", "bytes",
                 "highest", "seen", "lost", "duplicates", "reordered", "by_type", "clock",
                 "link", "addr", "host_seq", "_last_record", "_last_row", "witness", "online",
                 "extra", "raw_addr", "last_time_sync", "hello_requested", "telemetry_updates",
                 "lateness")

    def __init__(self, device_id, boot_id, now):
        self.device_id = device_id
        self.boot_id = boot_id
        self.hello = None
        self.opened = now
        self.last_seen = now
        self.frames = 0
        self.bytes = 0
        self.highest = -1
        self.seen = 0            # bit i <=> (highest - i) seen
        self.lost = 0
        self.duplicates = 0
        self.reordered = 0
        self.by_type = collections.Counter()
        self.clock = ClockEstimator()
        self.link = None
        self.addr = None
        self.host_seq = 0
        self._last_record = None  # the last TELEMETRY record (a dict), or None while it is
        self._last_row = None     # still a row (beats array, index) of a batch decode
        self.telemetry_updates = 0  # how often the last TELEMETRY record was replaced
        self.witness = 0
        self.raw_addr = None      # sockaddr bytes of `addr` (recvmmsg), to skip re-decoding it
        self.online = True
        self.extra = {}
        self.last_time_sync = None   # monotonic s of the last TIME_SYNC sent
        self.hello_requested = None  # monotonic s of the last request for a HELLO
        self.lateness = LatenessHistogram()   # every accepted beat's lateness (/metrics)

    @property
    def last_telemetry(self):
        """The last TELEMETRY record accepted (a dict of wire values), or None."""
        row = self._last_row
        if row is not None:
            arr, i = row
            rec = arr[i]
            self._last_record = {k: rec[k].item() for k in arr.dtype.names}
            self._last_row = None
        return self._last_record

    def note_telemetry(self, record):
        """The last TELEMETRY record, a dict (per-frame decode)."""
        self._last_record, self._last_row = record, None
        self.telemetry_updates += 1

    def note_telemetry_row(self, beats, row):
        """The last TELEMETRY record, row `row` of a batch decode's array (turned into a dict
        only when someone reads last_telemetry)."""
        self._last_row = (beats, row)
        self.telemetry_updates += 1

    def note_seq(self, seq):
        """'new' | 'reordered' | 'duplicate' | 'old_seq' (the last two must be refused)."""
        h = self.highest
        if seq > h:
            if h >= 0:
                self.lost += seq - h - 1
                shift = seq - h
                self.seen = ((self.seen << shift) | 1) & _MASK if shift < SEQ_WINDOW else 1
            else:
                self.lost += seq     # frames before the first one we saw were lost
                self.seen = 1
            self.highest = seq
            return "new"
        d = h - seq
        if d >= SEQ_WINDOW:
            self.duplicates += 1
            return "old_seq"
        bit = 1 << d
        if self.seen & bit:
            self.duplicates += 1
            return "duplicate"
        self.seen |= bit
        self.reordered += 1
        self.lost -= 1
        return "reordered"

    def note_seq_run(self, first, last, count):
        """Fast path for a batch of `count` strictly increasing seqs first..last, all above
        the highest: True when applied, False when the caller must go frame by frame."""
        h = self.highest
        if first <= h or last - first + 1 < count:
            return False
        span = last - first + 1
        if count != span:        # holes inside the run: the caller goes frame by frame
            return False
        self.lost += first - h - 1 if h >= 0 else first
        shift = last - h if h >= 0 else SEQ_WINDOW
        run = (1 << min(span, SEQ_WINDOW)) - 1
        self.seen = (((self.seen << shift) if shift < SEQ_WINDOW else 0) | run) & _MASK
        self.highest = last
        return True

    def next_host_seq(self):
        """Seq of the host's next frame to this (device, boot): never below the wall clock in
        0.1 s units, so a restarted host starts above what it used before and a keyed device's
        replay window still accepts its frames (host_seq_after, PROTOCOL.md §4)."""
        s = host_seq_after(self.host_seq - 1 if self.host_seq else None)
        self.host_seq = (s + 1) & 0x3FFFFFFF
        return s

    def summary(self):
        d = {"device_id": self.device_id, "boot_id": self.boot_id, "online": self.online,
             "opened": self.opened, "last_seen": self.last_seen, "frames": self.frames,
             "bytes": self.bytes, "highest_seq": self.highest, "lost": self.lost,
             "duplicates": self.duplicates, "reordered": self.reordered,
             "witness": self.witness, "last_telemetry": self.last_telemetry,
             "by_type": dict(self.by_type), "hello": self.hello,
             "link": getattr(self.link, "local_url", None),
             "addr": list(self.addr) if isinstance(self.addr, tuple) else self.addr,
             "clock": self.clock.estimate(), "lateness": self.lateness.snapshot()}
        # the scheduling times, under the keys status.json has always shown them with
        if self.last_time_sync is not None:
            d["_last_sync"] = self.last_time_sync
        if self.hello_requested is not None:
            d["_hello_req"] = self.hello_requested
        d.update(self.extra)
        return d


class Sessions:
    """Every device's current session, the retired boot ids per device (persisted in
    sessions.json) and the boot current when the host last stopped. Processing thread only.
    on_new_session(session) is called for every session opened. lookup() refuses a retired
    boot ("stale_boot"); nothing raises for bad input."""

    def __init__(self, path=None, max_old_boots=32, timeout_s=10.0, on_new_session=None):
        self.path = path
        self.max_old_boots = max_old_boots
        self.timeout_s = timeout_s
        self.on_new_session = on_new_session
        self.current = {}                  # device_id -> Session
        self.old_boots = {}                # device_id -> OrderedDict(boot_id -> retired time)
        self.resume = {}                   # device_id -> boot id current when the host stopped
        self.counters = collections.Counter()
        if path and os.path.exists(path):
            self._load()

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            for d, boots in data.get("old_boots", {}).items():
                self.old_boots[int(d)] = collections.OrderedDict((int(b), 0.0) for b in boots)
            for d, b in data.get("last_boot", {}).items():
                self.resume[int(d)] = int(b)
        except (ValueError, TypeError, AttributeError):
            self.counters["state_file_damaged"] += 1

    def save(self):
        """Persist retired boot ids and the current boot of each device (a restarted host
        lets that boot continue, and retires it once the device shows another one)."""
        if not self.path:
            return
        last = {str(d): b for d, b in self.resume.items()}
        last.update({str(d): s.boot_id for d, s in self.current.items()})
        data = {"old_boots": {str(d): list(o) for d, o in self.old_boots.items()},
                "last_boot": last}
        write_json(self.path, data, mode=0o600)

    def _retire(self, device_id, boot_id, now):
        o = self.old_boots.setdefault(device_id, collections.OrderedDict())
        o[boot_id] = now
        o.move_to_end(boot_id)
        while len(o) > self.max_old_boots:
            o.popitem(last=False)

    def lookup(self, device_id, boot_id, msg_type, now=None):
        """The session for a frame, or (None, reason) when refused.
        Returns (session, None) or (None, "stale_boot")."""
        s = self.current.get(device_id)
        if s is not None and s.boot_id == boot_id:
            return s, None
        now = time.time() if now is None else now
        o = self.old_boots.get(device_id)
        if o is not None and boot_id in o:
            self.counters["stale_boot"] += 1
            return None, "stale_boot"
        r = self.resume.pop(device_id, None)
        if r is not None and r != boot_id:     # the boot current at the last stop is over
            self._retire(device_id, r, now)
        if s is not None:
            self._retire(device_id, s.boot_id, now)
        s = Session(device_id, boot_id, now)
        self.current[device_id] = s
        self.counters["sessions_opened"] += 1
        if self.on_new_session is not None:
            self.on_new_session(s)
        return s, None

    def hello(self, session, fields):
        session.hello = dict(fields)

    def expire(self, now=None):
        """Mark sessions silent for timeout_s offline; returns those newly offline."""
        now = time.time() if now is None else now
        out = []
        for s in self.current.values():
            if s.online and now - s.last_seen > self.timeout_s:
                s.online = False
                out.append(s)
        return out

    def get(self, device_id):
        return self.current.get(device_id)

    def __len__(self):
        return len(self.current)

    def summary(self):
        return {"devices": len(self.current),
                "online": sum(1 for s in self.current.values() if s.online),
                "counters": dict(self.counters),
                "sessions": {str(d): s.summary() for d, s in sorted(self.current.items())}}
