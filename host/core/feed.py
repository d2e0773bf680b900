"""TELEMETRY into the core: each device's beats into its Master stream, pulse summaries into the
ledger, telemetry rows into memory, and the device's own Emissary coherence pushed to the
integration core (which the sync layer's events carry beside the host's value)."""
import numpy as np

from becomingone.devices.config import DEVICE_DEFAULTS

__all__ = ["TelemetryFeed"]

# a HELLO without fs_hz / period_us: the firmware's defaults (the KAIROS rate f_k = 250 Hz,
# docs/DEVICE.md "Signal path"; SPEC §3's period)
DEFAULT_FS_HZ = 250
DEFAULT_PERIOD_US = DEVICE_DEFAULTS["period_us"]


def kairos_rate(hello):
    """The rate of a device's KAIROS stream in Hz: its sample rate over the HELLO's KAIROS
    decimation (the device box-averages kairos_decim samples into one KAIROS sample)."""
    fs = hello.get("fs_hz") or 0
    if not fs:
        return DEFAULT_FS_HZ
    return fs / float(max(1, hello.get("kairos_decim", 1) or 1))


class TelemetryFeed:
    """Owns which Master stream each device's current boot integrates into (opened from its
    HELLO: the stream needs the device's f_s, period, sum shift, phase step and lag; TELEMETRY
    before the HELLO is counted, not integrated, and the HELLO is asked for). Processing thread
    only. Ports: master (or None), pulses (PulseSummaries), history (memory TelemetryHistory or
    None), integration (core Integration or None), counts (counters), request_hello(session)."""

    def __init__(self, master, pulses, counts, request_hello, history=None, integration=None):
        self.master = master
        self.pulses = pulses
        self.counts = counts
        self.request_hello = request_hello
        self.history = history
        self.integration = integration
        self._streams = {}        # device -> (Master stream index, boot it was opened for)

    # ------------------------------------------------------------------ streams
    def open_stream(self, session):
        """(Re)open the device's Master stream from its HELLO; returns the index or None."""
        master = self.master
        if master is None:
            return None
        h = session.hello or {}
        try:
            idx = master.open_stream(
                session.device_id, session.boot_id, kairos_rate(h),
                h.get("period_us", DEFAULT_PERIOD_US), sum_shift=h.get("sum_shift", 0),
                phase_step=h.get("phase_step", 0), lag_samples=h.get("lag_samples", 1))
        except ValueError as e:
            self.counts["master_errors"] += 1
            session.extra["master_error"] = str(e)
            idx = master.open_stream(session.device_id, session.boot_id, kairos_rate(h),
                                     max(DEFAULT_PERIOD_US, h.get("period_us", DEFAULT_PERIOD_US)))
        self._streams[session.device_id] = (idx, session.boot_id)
        return idx

    def stream_index(self, session):
        """The session's Master stream, or -1 while its HELLO is missing (counted as
        telemetry_before_hello; the device is asked for its HELLO)."""
        st = self._streams.get(session.device_id)
        if st is not None and st[1] == session.boot_id:
            return st[0]
        if session.hello is None:
            self.counts["telemetry_before_hello"] += 1
            self.request_hello(session)
            return -1
        return self.open_stream(session)

    def new_boot(self, device_id):
        """A device started a new boot: its sync state starts afresh."""
        if self.integration is not None:
            self.integration.new_stream(device_id)

    # ------------------------------------------------------------------ telemetry
    def telemetry(self, session, records):
        """The records of one TELEMETRY frame (dicts), session.last_telemetry already set."""
        master = self.master
        if master is not None:
            idx = self.stream_index(session)
            for r in records if idx >= 0 else ():
                master.ingest(idx, r["beat"], r["dT_re"], r["dT_im"], r["dE0"], r["dEL"],
                              r["n_samples"], 1)
        h = self.history
        if h is not None and h.every_record:
            h.records(session, records)
        self.counts["beats"] += len(records)
        self.pulses.beats(session, records[-1]["beat"], len(records), records[0]["beat"])
        if self.integration is not None:
            self.integration.telemetry_coherence(session.device_id, records[-1]["coherence"])

    def telemetry_rows(self, rows):
        """TelemetryRows of one receive batch (becomingone/ingest/pipeline.py)."""
        groups = rows.groups
        master = self.master
        if master is not None:
            index = self.stream_index
            midx = [-1 if g is None else index(g.session) for g in groups]
        if self.pulses.every > 0:
            beats = self.pulses.beats
            for g in groups:
                if g is not None:
                    beats(g.session, g.last_beat, g.stop - g.start, g.first_beat)
        nbeats = rows.nbeats
        self.counts["beats"] += nbeats
        b, keep = rows.beats, rows.keep
        h = self.history
        if h is not None and h.every_record and nbeats:   # memory.telemetry_interval: 0
            h.beats(b if keep.all() else b[keep])
        core = self.integration
        if core is not None:
            last = [g.last_row for g in groups if g is not None]
            for g, q16 in zip((g for g in groups if g is not None),
                              b["coherence"][last].tolist()):
                core.telemetry_coherence(g.session.device_id, q16)
        if master is not None and nbeats:
            idx = np.repeat(np.asarray(midx, dtype=np.int64), rows.ends - rows.starts)
            keep = keep & (idx >= 0)
            if keep.all():
                master.ingest_records(idx, b)
            else:
                master.ingest_records(idx[keep], b[keep])
