"""Where admitted frames go: the coordinator's FrameSink, routing each kind to the part that
owns it (devices/: sessions, configuration, time sync, WITNESS; core/: the telemetry feed)."""
import time

from becomingone.devices.config import config_key_of
from becomingone.devices.lateness import bucket_of
from becomingone.ingest.pipeline import FrameSink
from shared import protocol as P

__all__ = ["DeviceFrames"]


class DeviceFrames(FrameSink):
    """Routes the ingest's events (processing thread). Ports: sessions, devconfig
    (DeviceConfigs), admission (the PoW difficulty a device must use), witness (WitnessDesk),
    feed (core TelemetryFeed), sender (FrameSender: time sync), tally, model_at_hello(session)
    (the entropy model a device must run, sent at its first HELLO; None: nothing sent)."""

    def __init__(self, sessions, devconfig, admission, witness, feed, sender, tally,
                 model_at_hello=None):
        self.sessions = sessions
        self.devconfig = devconfig
        self.admission = admission
        self.witness_desk = witness
        self.feed = feed
        self.sender = sender
        self.tally = tally
        self.model_at_hello = model_at_hello

    def hello(self, session, fields):
        first = session.hello is None
        self.sessions.hello(session, fields)
        self.feed.open_stream(session)
        if first:
            self._first_hello(session)
        self.tally.counts["hellos"] += 1

    def _first_hello(self, s):
        """First HELLO of a session: resend the device's configuration, align its PoW
        difficulty with what the host requires, start time sync."""
        dev = s.device_id
        dc = self.devconfig
        # a CONFIG still waiting for its ACK when the device comes back from a crash or a
        # watchdog reset is what brought it down: refused, never sent again (not at this HELLO
        # either); devconfig.on_reset records it
        if s.hello.get("reset_cause") in (P.RESET_WATCHDOG, P.RESET_CRASH):
            dc.on_reset(dev, s.hello["reset_cause"])
        dc.resync(dev)
        need = self.admission.pow_bits_for(dev)
        if self.admission.pow_required and s.hello.get("pow_bits") != need and \
                dc.history(dev).state()["pow_bits"] == need and dev not in dc.pending:
            dc.push(dev, {"pow_bits": need})
        s.last_time_sync = time.monotonic()
        self.sender.time_sync(s)
        if self.model_at_hello is not None:
            self.model_at_hello(s)

    def telemetry(self, session, records):
        for r in records:
            session.lateness.observe_one(r["lateness_us"])
        self.feed.telemetry(session, records)

    def telemetry_rows(self, rows):
        late, keep = rows.beats["lateness_us"], rows.keep
        bk, lv = bucket_of(late), late.tolist()
        kl = None if keep.all() else keep.tolist()
        for g in rows.groups:
            if g is not None:
                g.session.lateness.observe_rows(bk, lv, g.start, g.stop, kl)
        self.feed.telemetry_rows(rows)

    def witness(self, session, frame, level):
        return self.witness_desk.receive(session, frame, level)

    def witness_again(self, session, frame):
        self.witness_desk.again(session, frame)

    def ack(self, session, fields):
        if fields["acked_type"] == P.CONFIG:
            self.devconfig.on_ack(session.device_id, fields["ref"], fields["status"])
        else:
            self.tally.counts["acks_%s" % P.TYPE_NAMES.get(fields["acked_type"], "other").lower()] += 1

    def time_sync(self, session, fields, device_time_us, received_us):
        t1 = fields["rx_era"] * P.SEQ_LIMIT + fields["rx_off"]
        try:
            session.clock.add_exchange(fields["host_t1_us"], t1, device_time_us, received_us)
        except ValueError:
            self.tally.reject("time_sync")
            return False
        return True

    def heartbeat(self, session, fields):
        session.extra["heartbeat"] = dict(fields)

    def device_error(self, session, fields):
        self.tally.counts["device_errors"] += 1
        session.extra["last_error"] = dict(fields)
        if fields["ref_type"] == P.CONFIG:     # the device refused a CONFIG
            self.devconfig.on_ack(session.device_id, fields["ref"], P.ACK_BAD_VALUE,
                                  key=config_key_of(fields["text"]))
