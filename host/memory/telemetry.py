"""Telemetry history in memory: per-device TELEMETRY samples and HEARTBEAT lateness percentiles,
for `becomingone plot` and `becomingone memory query --table telemetry|heartbeats`.

Tables (in the memory database, host/memory/store.py; the same retention and max_rows pruning):

    telemetry  (t, device_id, boot_id, beat, lateness_us, coherence, pid_error, pid_output,
                threat, o_weight, decision, flags, level, kurt, crest, anoms, device_t)
        t: host wall time (s) of the sample; device_t: the device's own time of the beat's frame
        mapped to host wall time (s) by the TIME_SYNC fit (NULL before the first sample);
        coherence, pid_output, threat, o_weight: Q16 / 65536;
        pid_error: Q15 / 32768; decision: decision_state bits 0-2 (0 NOOP, 1 APPLY_BALANCE,
        2 APPLY_OPTIMIZE, 3 ALERT, 4 QUARANTINE); flags: decision_state >> 6 (1 = Emissary
        collapse on that beat, 2 = quarantine latched); level, kurt, crest: the entropy model's
        features in octaves (wire Q8 / 256), anoms: its anomaly count (wire v2; what
        `becomingone model train` fits on)
    heartbeats (t, device_id, boot_id, beats, late_p50_us, late_p99_us, late_max_us)
        every HEARTBEAT the host accepted (about one per second per device): the device's own
        lateness percentiles since its previous heartbeat

Sampling (memory.telemetry_interval seconds, default 0.1): the coordinator's tick stores each
device's latest TELEMETRY record when one arrived since the last sample, so the receive path
does no extra work; the tick runs every 50 ms, so intervals below 0.05 s sample at every tick.
0 stores every record the host accepts (from the receive path, one numpy pass per batch).
Cost: one row per device per interval, 100 devices at 10 Hz = 1000 rows/s (~100 B each with
its index); memory.max_rows bounds the table (2 000 000 rows = 33 min of 100 devices at 10 Hz).

    h = TelemetryHistory.from_config(cfg, memory)   # None when memory.telemetry is off
    h.tick(sessions, now=None)       # coordinator tick: samples due, new heartbeats
    h.every_record                   # True when memory.telemetry_interval is 0
    h.beats(beats_array, now=None)   # interval 0: rows of a decoded batch (host/wire/telemetry.py BEAT_DTYPE)
    h.records(session, records, now=None)   # interval 0: per-frame decoded records (dicts)
"""
import time

import numpy as np

from shared import protocol as P

Q16 = 1.0 / 65536.0
Q15 = 1.0 / 32768.0
# the flags column: decision_state's state bits (STATE_COLLAPSE 0x40, STATE_QUARANTINE_LATCHED
# 0x80) shifted down to 1 and 2
FLAGS_SHIFT = 6
assert P.STATE_COLLAPSE == 1 << FLAGS_SHIFT and P.STATE_QUARANTINE_LATCHED == 2 << FLAGS_SHIFT
Q8 = 1.0 / 256.0

TABLES = ("telemetry", "heartbeats")
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS telemetry (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL, boot_id INTEGER,
  beat INTEGER, lateness_us INTEGER, coherence REAL, pid_error REAL, pid_output REAL,
  threat REAL, o_weight REAL, decision INTEGER, flags INTEGER, level REAL, kurt REAL,
  crest REAL, anoms INTEGER, device_t REAL);
CREATE INDEX IF NOT EXISTS telemetry_dt ON telemetry(device_id, t);
CREATE TABLE IF NOT EXISTS heartbeats (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL, boot_id INTEGER,
  beats INTEGER, late_p50_us INTEGER, late_p99_us INTEGER, late_max_us INTEGER);
CREATE INDEX IF NOT EXISTS heartbeats_dt ON heartbeats(device_id, t);
"""
INSERT = {
    "telemetry": "INSERT INTO telemetry (t, device_id, boot_id, beat, lateness_us, coherence, "
                 "pid_error, pid_output, threat, o_weight, decision, flags, level, kurt, crest, "
                 "anoms, device_t) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "heartbeats": "INSERT INTO heartbeats (t, device_id, boot_id, beats, late_p50_us, late_p99_us, "
                  "late_max_us) VALUES (?,?,?,?,?,?,?)",
}


# columns added since the table was first made (wire v2): ALTERed into an older database
ADDED_COLUMNS = (("telemetry", "level", "REAL"), ("telemetry", "kurt", "REAL"),
                 ("telemetry", "crest", "REAL"), ("telemetry", "anoms", "INTEGER"),
                 ("telemetry", "device_t", "REAL"))


def migrate(db):
    """Add the columns an older memory database lacks (called when the store opens)."""
    for table, col, kind in ADDED_COLUMNS:
        have = [r[1] for r in db.execute("PRAGMA table_info(%s)" % table)]
        if have and col not in have:
            db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, col, kind))
    db.commit()


def telemetry_row(t, device_id, boot_id, r, device_t=None):
    """One telemetry row from a decoded TELEMETRY record (a dict of wire values); device_t:
    its device time on the host's wall clock (Session.beat_time_unix), or None."""
    ds = int(r["decision_state"])
    return (float(t), int(device_id), boot_id, int(r["beat"]), int(r["lateness_us"]),
            r["coherence"] * Q16, r["pid_error"] * Q15, r["pid_output"] * Q16, r["threat"] * Q16,
            r["o_weight"] * Q16, ds & P.DECISION_MASK, ds >> FLAGS_SHIFT, r.get("level", 0) * Q8,
            r.get("kurt", 0) * Q8, r.get("crest", 0) * Q8, int(r.get("anoms", 0)), device_t)


def telemetry_rows_from_beats(t, b):
    """Rows of a decoded batch (numpy BEAT_DTYPE array), one per beat, in one numpy pass."""
    n = len(b)
    if not n:
        return []
    ds = b["decision_state"].astype(np.int64)
    cols = (b["device_id"].tolist(), b["boot_id"].tolist(), b["beat"].tolist(),
            b["lateness_us"].tolist(), (b["coherence"] * Q16).tolist(),
            (b["pid_error"] * Q15).tolist(), (b["pid_output"] * Q16).tolist(),
            (b["threat"] * Q16).tolist(), (b["o_weight"] * Q16).tolist(),
            (ds & P.DECISION_MASK).tolist(), (ds >> FLAGS_SHIFT).tolist(), (b["level"] * Q8).tolist(),
            (b["kurt"] * Q8).tolist(), (b["crest"] * Q8).tolist(), b["anoms"].tolist(),
            [None] * n)
    return list(zip([float(t)] * n, *cols))


def heartbeat_row(t, device_id, boot_id, f):
    return (float(t), int(device_id), boot_id, int(f["beats"]), int(f["late_p50_us"]),
            int(f["late_p99_us"]), int(f["late_max_us"]))


class TelemetryHistory:
    """The telemetry and heartbeat rows of the memory store (module docstring): owns the
    sampling schedule and what was sampled last per device. Raises ValueError for a negative
    interval."""
    def __init__(self, memory, interval=0.1):
        self.memory = memory
        self.interval = float(interval)
        if self.interval < 0:
            raise ValueError("telemetry interval must be >= 0 seconds, got %r" % interval)
        self.every_record = self.interval == 0
        self._next = 0.0
        self._seen = {}          # device -> (boot, telemetry_updates) of its last sample
        self._hb_seen = {}       # device -> the last HEARTBEAT fields dict stored
        self.rows = 0

    @classmethod
    def from_config(cls, cfg, memory):
        m = cfg.memory
        if memory is None or not m.telemetry:
            return None
        return cls(memory, interval=m.telemetry_interval)

    def tick(self, sessions, now=None):
        """From the coordinator's tick: heartbeats not stored yet, and when the sampling
        interval is due, each device's latest record not sampled yet."""
        mem = self.memory
        t = time.time() if now is None else now
        hb_seen = self._hb_seen
        hb = []
        due = not self.every_record and t >= self._next
        tel = []
        seen = self._seen
        for s in sessions:
            h = s.extra.get("heartbeat")
            if h is not None and hb_seen.get(s.device_id) is not h:
                hb_seen[s.device_id] = h
                hb.append(heartbeat_row(t, s.device_id, s.boot_id, h))
            if due and s.telemetry_updates:
                mark = (s.boot_id, s.telemetry_updates)
                if seen.get(s.device_id) != mark:     # a record newer than the last sample
                    seen[s.device_id] = mark
                    tel.append(telemetry_row(t, s.device_id, s.boot_id, s.last_telemetry,
                                             s.beat_time_unix()))
        if due:
            self._next = max(self._next + self.interval, t)
        if hb:
            mem.table_rows("heartbeats", hb, t)
        if tel:
            mem.table_rows("telemetry", tel, t)
            self.rows += len(tel)

    def beats(self, b, now=None):
        rows = telemetry_rows_from_beats(time.time() if now is None else now, b)
        if rows:
            self.memory.table_rows("telemetry", rows, rows[0][0])
            self.rows += len(rows)

    def records(self, s, records, now=None):
        t = time.time() if now is None else now
        dt = s.beat_time_unix()
        rows = [telemetry_row(t, s.device_id, s.boot_id, r, dt) for r in records]
        if rows:
            self.memory.table_rows("telemetry", rows, t)
            self.rows += len(rows)
