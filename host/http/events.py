"""Dashboard snapshots and the ledger's decision/collapse timeline (docs/HTTP.md, "Events").

One Hub per server. `hub.get()` returns the current Snapshot and rebuilds it when it is older
than http.sse_interval: the first caller after that rebuilds (one CoordinatorView.dashboard()
reading status, sync states and the Master's windows), the others wait for it and share the result,
so N dashboards cost one snapshot per interval. The timeline comes from the ledger, read
incrementally (only entries appended since the last look) outside the processing thread:
devices' decision WITNESS records, quarantine_cleared records, CLEAR actions, and the sync
layer's collapse entries.
"""
import collections
import threading
import time

from becomingone.devices.state import device_state, state_time, window_label
from becomingone.http.responses import ApiError, dumps
from becomingone.ledger.checkpoint import parse_note

__all__ = ["Hub", "Snapshot"]

TAIL_AT_START = 20000        # ledger entries read back when the server starts
KEEP_DECISIONS = 2000
KEEP_COLLAPSES = 500


class Snapshot:
    """One dashboard snapshot: its sequence number, build time, data, and the data encoded
    as JSON and as an SSE event."""
    __slots__ = ("seq", "built", "data", "json", "sse")

    def __init__(self, seq, built, data, encoded=None):
        self.seq, self.built, self.data = seq, built, data
        self.json = dumps(data) if encoded is None else encoded
        self.sse = b"id: %d\nevent: snapshot\ndata: %s\n\n" % (seq, self.json)


class Hub:
    """Owns the current dashboard snapshot and the decision/collapse timeline read from the
    ledger. view: the coordinator's CoordinatorView. Raises ApiError 503 when the coordinator
    is too busy to give the first snapshot."""

    def __init__(self, view, interval):
        self.view = view
        self.interval = float(interval)
        self._snap = None
        self._seq = 0
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._scanned = None
        self._decisions = collections.deque(maxlen=KEEP_DECISIONS)
        self._collapses = collections.deque(maxlen=KEEP_COLLAPSES)
        self._counts = collections.Counter()
        self._cp_text = None
        self._cp = None
        self.errors = 0

    # ------------------------------------------------------------------ ledger timeline
    def scan(self):
        """Read the ledger entries appended since the last call (thread-safe)."""
        led = self.view.ledger
        if led is None:
            return
        with self._scan_lock:
            size = led.size
            start = max(0, size - TAIL_AT_START) if self._scanned is None else self._scanned
            if start >= size:
                self._scanned = size
                return
            for e in led.entries(start, size):
                j = e.data_json
                if '"kind":"witness"' in j:
                    if '"witness":"decision"' in j or '"witness":"quarantine_cleared"' in j:
                        d = e.data
                        ev = {"index": e.index, "time": state_time(e.timestamp), "device": d.get("device"),
                              "boot": d.get("boot"), "beat": d.get("beat"),
                              "event": d.get("witness"), "decision": d.get("decision"),
                              "threat": d.get("threat")}
                        self._decisions.append(ev)
                        self._counts[ev["decision"] if ev["event"] == "decision" else ev["event"]] += 1
                elif '"kind":"action"' in j and '"action":"clear"' in j:
                    d = e.data
                    self._decisions.append({"index": e.index, "time": state_time(e.timestamp),
                                            "device": d.get("device"),
                                            "boot": None, "beat": None, "event": "clear",
                                            "decision": None, "threat": None, "sent": d.get("sent")})
                    self._counts["clear"] += 1
                elif '"kind":"collapse"' in j:
                    d = e.data
                    self._collapses.append({"index": e.index, "time": state_time(e.timestamp),
                                            "device": d.get("device", d.get("device_id")),
                                            "C_sync": d.get("C_sync"), "delta_phase": d.get("delta_phase")})
            self._scanned = size

    def decisions(self, device=None, limit=100):
        self.scan()
        with self._scan_lock:
            evs = [e for e in self._decisions if device is None or e["device"] == device]
        return evs[-limit:]

    def decision_counts(self):
        self.scan()
        with self._scan_lock:
            return dict(self._counts)

    def collapses(self, limit=50):
        self.scan()
        with self._scan_lock:
            return list(self._collapses)[-limit:]

    def checkpoint(self):
        led = self.view.ledger
        text = led.latest_checkpoint() if led is not None else None
        if text is None:
            return None
        if text != self._cp_text:
            n = parse_note(text)
            self._cp = {"size": n["size"], "root": n["root"].hex(), "origin": n["origin"],
                        "time": state_time(n["timestamp_ms"] / 1000.0), "note": text}
            self._cp_text = text
        return self._cp

    # ------------------------------------------------------------------ snapshots
    def get(self):
        with self._lock:
            s = self._snap
            if s is None or time.monotonic() - s.built >= self.interval:
                try:
                    s = self._snap = self._build()
                except Exception:          # keep serving the last one (stale); counted
                    self.errors += 1
                    if s is None:
                        raise
                    self._snap = s = Snapshot(s.seq, time.monotonic(), s.data, s.json)
            return s

    def _build(self):
        view = self.view
        try:
            st, sync, windows = view.dashboard(timeout=2.0)
        except TimeoutError:
            raise ApiError(503, "the coordinator did not answer within 2 s (busy); try again") from None
        self.scan()
        devices = [device_state(s, sync=sync.get(int(key)), windows=windows.get(int(key)))
                   for key, s in sorted((st.get("sessions") or {}).items(),
                                        key=lambda kv: int(kv[0]))]
        for d in devices:
            d.pop("lateness_histogram", None)   # /metrics exports it
        cp = self.checkpoint()
        integ = st.get("integration") or {}
        with self._scan_lock:
            decisions = list(self._decisions)[-100:]
            collapses = list(self._collapses)[-20:]
        mesh = st.get("mesh") or {"enabled": False}
        cfg = view.settings
        self._seq += 1
        data = {
            "seq": self._seq, "time": state_time(time.time()), "uptime_s": st.get("uptime_s"),
            "running": st.get("running"), "name": cfg.becomingone.name,
            "I_c": cfg.kairos.coherence_threshold, "windows": [window_label(w) for w in cfg.window_seconds()],
            "interval": self.interval,
            "frames": {"received": st.get("frames_received"), "accepted": st.get("frames_accepted"),
                       "sent": st.get("frames_sent"), "rejected": st.get("frames_rejected")},
            "devices_seen": st.get("devices_seen"), "devices_online": st.get("devices_online"),
            "devices": devices, "decisions": decisions,
            "collapses": {"sync": integ.get("collapses", 0), "releases": integ.get("releases", 0),
                          "recent": collapses},
            "ledger": {"size": (st.get("ledger") or {}).get("size"),
                       "checkpoint": None if cp is None else {k: cp[k] for k in
                                                              ("size", "root", "time")}},
            "mesh": mesh,
        }
        return Snapshot(self._seq, time.monotonic(), data)
