"""Device sessions: one per (device id, boot id).

Keyed devices (a key in the keystore) get a session only through the handshake
(host/devices/handshake.py, docs/PROTOCOL.md §4.1): `establish(device, boot, auth)` makes the
boot current with its session key (`auth`, an Auth of the per-session key, RAM only; `auths`
maps each keyed device to its current session key for the batch decoder) and retires the
previous boot. A HELLO alone never opens, retires or replaces anything.

Keyless devices (`admission.unknown_devices` observe or accept) cannot prove anything, so:
a frame of a new boot opens a session only when the device has no live session (none, or its
current one silent for `takeover_s`); while the current boot is live, frames of another boot
are refused ("unconfirmed_boot") and do not retire it: one spoofed HELLO cannot lock a device
out. At most `max_unkeyed` keyless devices are taken in ("device_limit" beyond: each holds
Master rings for the rest of the run); a keyless session silent for `unkeyed_idle_s` is dropped.
Frames from a *retired* boot id of a device -- replays of an earlier boot -- are refused with
reason "stale_boot". Retired boot ids are kept in a bounded set per device (`max_old_boots`,
default 32, oldest forgotten first; a genuine reboot picks a random 16-bit boot id, so the
chance that it collides with a retired one is <= 32/65535 and such a device is seen again at
its next reboot). The set persists in the data folder (sessions.json) across host restarts, with
each device's current boot and its highest sequence number: after a restart frames at or below
it are refused (replays of the boot that was current).

Sequence numbers: frames after the highest seen add `seq - highest - 1` to `lost`; a frame
at or below the highest is a `duplicate` when already seen (refused, so it is never integrated
twice) or `reordered` when it fills a hole within the last `window` (64) numbers (accepted,
`lost` decremented). Older than the window: refused as duplicate-or-stale ("old_seq"). A jump
of more than JUMP_WINDOW (4096) above the highest is not followed at once ("seq_jump"): the
session follows it only when JUMP_CONFIRM (3) increasing frames arrive just above it while the
old sequence has been silent for JUMP_QUIET_S (1 s) -- one forged or corrupt frame with a huge
seq cannot make every later genuine frame "old".
"""
import collections
import json
import os
import time

from becomingone.devices.lateness import LatenessHistogram
from becomingone.devices.timesync import ClockEstimator
from becomingone.util.atomic import write_json
from shared import protocol as P

__all__ = ["Session", "Sessions", "SEQ_WINDOW", "JUMP_WINDOW", "host_seq_after"]

SEQ_WINDOW = 64
_MASK = (1 << SEQ_WINDOW) - 1
JUMP_WINDOW = 4096        # a larger forward jump needs corroboration (module docstring)
JUMP_CONFIRM = 3          # frames just above the jump that confirm it
JUMP_QUIET_S = 1.0        # ... while the old sequence has been silent this long


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
                 "lateness", "auth", "keyed", "jump", "seq_jumps", "rekeys", "_last_time_us")

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
        self._last_time_us = None   # device time of the last TELEMETRY (per-frame decode)
        self.witness = 0
        self.raw_addr = None      # sockaddr bytes of `addr` (recvmmsg), to skip re-decoding it
        self.online = True
        self.extra = {}
        self.last_time_sync = None   # monotonic s of the last TIME_SYNC sent
        self.hello_requested = None  # monotonic s of the last request for a HELLO
        self.lateness = LatenessHistogram()   # every accepted beat's lateness (/metrics)
        self.auth = None          # the session key (shared.auth.Auth), keyed devices only
        self.keyed = False
        self.jump = None          # [first seq, last seq, count] of an unconfirmed seq jump
        self.seq_jumps = 0        # frames refused as an unconfirmed jump
        self.rekeys = 0           # handshakes completed again in this boot (host restart, ...)

    @property
    def last_telemetry(self):
        """The last TELEMETRY record accepted (a dict of wire values), or None."""
        row = self._last_row
        if row is not None:
            arr, i = row
            # one C call for the row's values (24 fields: ~2 us, not ~25 field by field)
            self._last_record = dict(zip(arr.dtype.names, arr[i].item()))
            self._last_row = None
        return self._last_record

    @property
    def last_telemetry_time_us(self):
        """Device time (µs since its boot) of the last TELEMETRY record's frame, or None."""
        row = self._last_row
        if row is not None:
            return int(row[0]["time_us"][row[1]])
        return self._last_time_us

    def beat_time_unix(self):
        """The last TELEMETRY's device time on the host's wall clock (the clock fit), or None."""
        t = self.last_telemetry_time_us
        return None if t is None else self.clock.device_time_unix(t)

    def note_telemetry(self, record, time_us=None):
        """The last TELEMETRY record, a dict (per-frame decode), and its frame's device time."""
        self._last_record, self._last_row = record, None
        self._last_time_us = time_us
        self.telemetry_updates += 1

    def note_telemetry_row(self, beats, row):
        """The last TELEMETRY record, row `row` of a batch decode's array (turned into a dict
        only when someone reads last_telemetry)."""
        self._last_row = (beats, row)
        self.telemetry_updates += 1

    def note_seq(self, seq, now=None):
        """'new' | 'reordered' | 'duplicate' | 'old_seq' | 'jump' (the last three must be
        refused)."""
        h = self.highest
        if seq > h:
            if h >= 0 and seq - h > JUMP_WINDOW and not self._jump_confirmed(seq, now):
                self.seq_jumps += 1
                return "jump"
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

    def _jump_confirmed(self, seq, now):
        """A frame far above the highest: follow it only once JUMP_CONFIRM increasing frames
        arrived just above the jump while the old sequence stayed silent for JUMP_QUIET_S."""
        j = self.jump
        if j is not None and j[1] < seq <= j[1] + SEQ_WINDOW:
            j[1] = seq
            j[2] += 1
        else:
            self.jump = j = [seq, seq, 1]
        now = time.time() if now is None else now
        if j[2] >= JUMP_CONFIRM and now - self.last_seen >= JUMP_QUIET_S:
            self.jump = None
            return True
        return False

    def note_seq_run(self, first, last, count):
        """Fast path for a batch of `count` strictly increasing seqs first..last, all above
        the highest: True when applied, False when the caller must go frame by frame."""
        h = self.highest
        if first <= h or last - first + 1 < count or (h >= 0 and last - h > JUMP_WINDOW):
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

    def note_seq_sparse(self, seqs):
        """Fast path for strictly increasing seqs (a list) with holes between them (frames lost
        or shed), all above the highest and within JUMP_WINDOW of it: True when applied, with
        the same effect as note_seq on each (every one "new"), False when the caller must go
        frame by frame."""
        h = self.highest
        first, last = seqs[0], seqs[-1]
        if first <= h or last - (h if h >= 0 else first) > JUMP_WINDOW:
            return False
        n = len(seqs)
        self.lost += last - h - n if h >= 0 else last + 1 - n
        bits = 0
        for q in seqs:
            d = last - q
            if d < SEQ_WINDOW:
                bits |= 1 << d
        shift = last - h if h >= 0 else SEQ_WINDOW
        self.seen = (((self.seen << shift) if shift < SEQ_WINDOW else 0) | bits) & _MASK
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
             "clock": self.clock.estimate(), "lateness": self.lateness.snapshot(),
             "beat_time_unix": self.beat_time_unix(),
             "keyed": self.keyed, "session_key": self.auth is not None,
             "rekeys": self.rekeys, "seq_jumps": self.seq_jumps}
        # the scheduling times, under the keys status.json has always shown them with
        if self.last_time_sync is not None:
            d["_last_sync"] = self.last_time_sync
        if self.hello_requested is not None:
            d["_hello_req"] = self.hello_requested
        d.update(self.extra)
        return d


class Sessions:
    """Every device's current session, the retired boot ids per device (persisted in
    sessions.json), the boot current when the host last stopped (and its highest seq), the
    current session key of each keyed device (`auths`). Processing thread only.
    on_new_session(session) is called for every session opened. lookup() refuses a retired
    boot ("stale_boot"), a keyed device's boot without a completed handshake ("no_session"), a
    keyless device's new boot while its current one is live ("unconfirmed_boot") and keyless
    devices beyond max_unkeyed ("device_limit"); with hello_first (admission other than
    accept), a keyless device's boot is opened only by its HELLO (or the boot current when
    the host stopped): any other frame of a boot with no session is refused ("no_hello"), so
    junk that happens to be well formed opens no phantom device. Nothing raises for bad
    input."""

    def __init__(self, path=None, max_old_boots=32, timeout_s=10.0, on_new_session=None,
                 takeover_s=2.0, max_unkeyed=256, unkeyed_idle_s=600.0, hello_first=False):
        self.path = path
        self.hello_first = bool(hello_first)
        self.max_old_boots = max_old_boots
        self.timeout_s = timeout_s
        self.takeover_s = float(takeover_s)
        self.max_unkeyed = int(max_unkeyed)
        self.unkeyed_idle_s = float(unkeyed_idle_s)
        self.on_new_session = on_new_session
        self.current = {}                  # device_id -> Session
        self.auths = {}                    # device_id -> Auth of its current session key
        self.old_boots = {}                # device_id -> OrderedDict(boot_id -> retired time)
        self.resume = {}                   # device_id -> boot id current when the host stopped
        self.resume_seq = {}               # device_id -> its highest seq then
        self.unkeyed = set()               # keyless devices taken in (bounded: max_unkeyed)
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
            for d, q in data.get("last_seq", {}).items():
                self.resume_seq[int(d)] = int(q)
        except (ValueError, TypeError, AttributeError):
            self.counters["state_file_damaged"] += 1

    def save(self):
        """Persist retired boot ids and the current boot of each device with its highest seq (a
        restarted host lets that boot continue above that seq, and retires it once the device
        shows another one)."""
        if not self.path:
            return
        last = {str(d): b for d, b in self.resume.items()}
        last.update({str(d): s.boot_id for d, s in self.current.items()})
        seqs = {str(d): q for d, q in self.resume_seq.items() if str(d) in last}
        seqs.update({str(d): s.highest for d, s in self.current.items() if s.highest >= 0})
        data = {"old_boots": {str(d): list(o) for d, o in self.old_boots.items()},
                "last_boot": last, "last_seq": seqs}
        write_json(self.path, data, mode=0o600)

    def _retire(self, device_id, boot_id, now):
        o = self.old_boots.setdefault(device_id, collections.OrderedDict())
        o[boot_id] = now
        o.move_to_end(boot_id)
        while len(o) > self.max_old_boots:
            o.popitem(last=False)

    def lookup(self, device_id, boot_id, msg_type, now=None, keyed=False):
        """The session for a frame, or (None, reason) when refused: "stale_boot",
        "no_session" (a keyed device's boot that has not completed the handshake), "no_hello"
        (hello_first: a keyless device's boot with no session, not by a HELLO),
        "unconfirmed_boot" (a keyless device's other boot while its current one is live),
        "device_limit" (max_unkeyed keyless devices taken in already)."""
        s = self.current.get(device_id)
        if s is not None and s.boot_id == boot_id:
            return s, None
        if keyed:
            return None, "no_session"
        now = time.time() if now is None else now
        o = self.old_boots.get(device_id)
        if o is not None and boot_id in o:
            self.counters["stale_boot"] += 1
            return None, "stale_boot"
        if self.hello_first and msg_type != P.HELLO and self.resume.get(device_id) != boot_id:
            self.counters["no_hello"] += 1
            return None, "no_hello"
        if s is not None and now - s.last_seen < self.takeover_s:
            self.counters["unconfirmed_boot"] += 1
            return None, "unconfirmed_boot"
        if device_id not in self.unkeyed:
            if len(self.unkeyed) >= self.max_unkeyed:
                self.counters["device_limit"] += 1
                return None, "device_limit"
            self.unkeyed.add(device_id)
        return self._open(device_id, boot_id, now), None

    def _open(self, device_id, boot_id, now):
        s = self.current.get(device_id)
        r = self.resume.pop(device_id, None)
        q = self.resume_seq.pop(device_id, None)
        if r is not None and r != boot_id:     # the boot current at the last stop is over
            self._retire(device_id, r, now)
        if s is not None and s.boot_id != boot_id:
            self._retire(device_id, s.boot_id, now)
        s = Session(device_id, boot_id, now)
        if r == boot_id and q is not None and q >= 0:
            s.highest = q                      # frames of before the restart: already seen
            s.seen = _MASK
        self.current[device_id] = s
        self.auths.pop(device_id, None)
        self.counters["sessions_opened"] += 1
        if self.on_new_session is not None:
            self.on_new_session(s)
        return s

    def establish(self, device_id, boot_id, auth, now=None):
        """A keyed device completed the handshake for boot_id: its session (opened now, the
        previous boot retired; or the same boot's, re-keyed) with the new session key.
        Returns (session, opened). Refuses nothing: the caller checked the proof."""
        now = time.time() if now is None else now
        s = self.current.get(device_id)
        opened = s is None or s.boot_id != boot_id
        if opened:
            o = self.old_boots.get(device_id)
            if o is not None:
                o.pop(boot_id, None)            # proven now: not a replay
            s = self._open(device_id, boot_id, now)
        else:
            s.rekeys += 1
        s.keyed = True
        s.auth = auth
        self.auths[device_id] = auth
        self.counters["sessions_keyed"] += 1
        return s, opened

    def drop_key(self, device_id):
        """The device's key was removed or replaced: its session key is void."""
        s = self.current.get(device_id)
        if s is not None:
            s.auth = None
        self.auths.pop(device_id, None)

    def hello(self, session, fields):
        session.hello = dict(fields)

    def expire(self, now=None):
        """Mark sessions silent for timeout_s offline (returned); drop keyless sessions silent
        for unkeyed_idle_s (phantoms of spoofed ids must not accumulate)."""
        now = time.time() if now is None else now
        out = []
        idle = []
        for d, s in self.current.items():
            if s.online and now - s.last_seen > self.timeout_s:
                s.online = False
                out.append(s)
            if not s.keyed and now - s.last_seen > self.unkeyed_idle_s:
                idle.append(d)
        for d in idle:
            s = self.current.pop(d)
            self._retire(d, s.boot_id, now)
            self.counters["sessions_dropped_idle"] += 1
        return out

    def get(self, device_id):
        return self.current.get(device_id)

    def __len__(self):
        return len(self.current)

    def summary(self):
        return {"devices": len(self.current),
                "online": sum(1 for s in self.current.values() if s.online),
                "unkeyed_devices": len(self.unkeyed), "max_unkeyed": self.max_unkeyed,
                "counters": dict(self.counters),
                "sessions": {str(d): s.summary() for d, s in sorted(self.current.items())}}
