"""Pulse summaries in the ledger (docs/LEDGER.md, kind `pulse`): one entry each time a device's
beat crosses a multiple of ledger.pulse_summary_every (1 = every beat, 0 = none), carrying the
device's last TELEMETRY in physical units; and the T_Λ pulse period of SPEC 4.1."""
import math

from becomingone.wire.telemetry import decode_telemetry

__all__ = ["PulseSummaries", "pulse_period_s"]


def pulse_period_s(k, P, T1, U):
    """T_Λ = T1 ln(U) / (1 - 1/(kP)), never below 1e-6 s (SPEC 4.1); None when k*P <= 1."""
    if not k * P > 1.0:
        return None
    return max(1e-6, T1 * math.log(U) / (1.0 - 1.0 / (k * P)))


class PulseSummaries:
    """Writes the `pulse` entries of every device (processing thread). submit(kind, data) hands
    an entry to the ledger; counts: the coordinator's counters (pulse_entries)."""

    def __init__(self, every, submit, counts):
        self.every = int(every)
        self.submit = submit
        self.counts = counts
        self._next = {}           # device -> (boot, next beat at which a summary is due)

    def beats(self, session, last_beat, n, first_beat=None):
        """`n` beats of `session` arrived, the last numbered last_beat."""
        every = self.every
        if every <= 0:
            return
        dev = session.device_id
        due = self._next.get(dev)
        nxt = due[1] if due is not None and due[0] == session.boot_id else None
        if nxt is None:           # the stream's first beats: the next multiple after them
            first = last_beat - n + 1 if first_beat is None else first_beat
            nxt = (first // every + 1) * every
            self._next[dev] = (session.boot_id, nxt)
        if last_beat < nxt:
            return
        rec = session.last_telemetry
        emitted = 0
        while last_beat >= nxt and emitted < max(64, n):
            data = {"device": dev, "boot": session.boot_id, "beat": int(nxt), "beats": every}
            try:
                u = decode_telemetry(rec, session.hello)
                data.update(coherence=u["coherence"], threat=u["threat"],
                            decision_state=int(rec["decision_state"]), period_us=u["period_us"])
            except (KeyError, IndexError, ValueError, TypeError):
                pass
            self.submit("pulse", data)
            self.counts["pulse_entries"] += 1
            nxt += every
            emitted += 1
        self._next[dev] = (session.boot_id, (last_beat // every + 1) * every)
