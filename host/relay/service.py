"""The relay node: local devices' frames to a remote coordinator and its replies back, with no
Master, ledger or device key of its own (docs/MESH.md "Node types").

    relay = Relay(["udp://0.0.0.0:18790", "/dev/ttyACM0"], "udp://10.0.0.5:18790",
                  buffer=10000).start()
    relay.run(duration=None)            # until stop() (a signal handler calls it)
    relay.status()                      # counters, uplink state, buffer, devices

Parts (composition): the local links (host/links, opened by URL exactly as `becomingone run`
opens them, one reader thread each), an uplink (relay/uplink.py: UDP, one socket per local
device toward the coordinator, or NATS, one channel per local device), a FrameBuffer (relay/buffer.py) and one Endpoint per local device. One
thread, run(), owns all of them but the readers, which only queue what they receive.

Uplink state. UDP says nothing about delivery, so the relay judges the uplink by what the
coordinator sends back:
  - lost when a send fails (ICMP unreachable: ECONNREFUSED, ENETUNREACH, ...), when a WITNESS
    the relay forwarded is not acknowledged within `ack_timeout` s (the coordinator ACKs every
    WITNESS it takes or refuses), or when nothing at all came back for `silence` s while frames
    went up (the coordinator sends every live device TIME_SYNC at least every 10 s);
  - back as soon as any datagram arrives from the coordinator.
While it is lost every new frame is buffered, and the WITNESS frames sent but not acknowledged
go back to the front of their device's FIFO: they are sent again. Every `probe` s the relay sends
each device's oldest buffered frame (order kept: the coordinator sees it first either way); the
coordinator's answer (the ACK of a WITNESS, a CHALLENGE, a new-session request, a TIME_SYNC)
marks the uplink back. Then each device's FIFO is replayed oldest first at up to `replay_rate`
cost units/s per device (the coordinator's rate-limit units: by default 60 % of what it grants a
device, so the replay is never refused there), and its new frames queue behind it, so a device's frames reach the coordinator in the order sent.
A frame the coordinator already took (a probe, a WITNESS whose ACK was lost) arrives twice and is
refused as a duplicate by its sequence check: nothing is integrated or written twice; a WITNESS
refused so draws its record's ACK again, so the probe with the frame whose ACK was lost is answered
(the device's session may have gone offline meanwhile, and an offline session gets no TIME_SYNC).
"""
import collections
import os
import queue
import select
import socket
import threading
import time

from becomingone.config.schema import SCHEMA
from becomingone.errors import LinkError, RelayError, UserError
from becomingone.ingest.ratelimit import frame_complexity, variance_cost
from becomingone.links import make_link
from becomingone.relay.buffer import Entry, FrameBuffer
from becomingone.relay.frames import acked_witness, peek, witness_key
from becomingone.relay.uplink import LOST_ERRNOS, make_uplink
from becomingone.util.atomic import write_json
from shared import protocol as P
from shared import wire_format as W

__all__ = ["Relay", "Endpoint", "DEFAULTS", "LIMITS"]

# Replay pacing is in the coordinator's own rate-limit units (host/ingest/ratelimit.py: a frame
# costs complexity^1.5): by default a device's replay plus its live frames use 60 % of the
# per-device refill the coordinator grants by default, so a replay is never rate-limited there.
REPLAY_SHARE = 0.6
_REFILL = SCHEMA["admission"]["rate"]["refill"].default
# The one definition of the relay's defaults (the CLI shows them) and of their allowed ranges.
DEFAULTS = {"buffer": 10000, "ack_timeout": 3.0, "silence": 30.0, "probe": 1.0,
            "replay_rate": REPLAY_SHARE * _REFILL, "idle": 600.0}
LIMITS = {"buffer": (1, 1000000), "ack_timeout": (0.1, 600), "silence": (1, 3600),
          "probe": (0.05, 60), "replay_rate": (1, 100000), "idle": (1, 86400)}
_RECV_BURST = 256          # datagrams read from one uplink socket per wake-up
ACKED_KEEP = 256           # (boot, witness_id) keys remembered as ACKed, per device
MAX_SENDS = 4              # a WITNESS frame sent this often without its ACK is left to the device


def frame_cost(e):
    """What the coordinator's rate limiter charges for the frame (host/ingest/ratelimit.py)."""
    payload = len(e.frame) - W.HEADER_LEN - W.CRC_LEN - (W.TAG_LEN if e.frame[0] & W.FLAG_AUTH
                                                           else 0)
    return variance_cost(frame_complexity(e.type, payload))


_COST_MAX = variance_cost(frame_complexity(P.TELEMETRY, W.MAX_FRAME))


def check_option(name, value):
    lo, hi = LIMITS[name]
    if not lo <= value <= hi:
        flag = "--" + name.replace("_", "-")
        raise UserError("%s must be %s..%s (got %r)" % (flag, lo, hi, value))
    return value


class Endpoint:
    """One local device as the coordinator sees it: the link and reply address on the device's
    side, a socket of its own toward the coordinator, the WITNESS frames sent and not yet
    acknowledged ((boot, witness_id) -> Entry, with the time sent), counters."""

    def __init__(self, key, link, addr, sock):
        self.key, self.link, self.addr, self.sock = key, link, addr, sock
        self.device_id = None
        self.inflight = {}             # (boot, witness_id) -> (Entry, sent at)
        self.acked = collections.OrderedDict()   # (boot, witness_id) the coordinator ACKed
        self.tokens = 0.0              # replay pacing
        self.last_seen = time.monotonic()
        self.up = 0                    # frames from the device
        self.down = 0                  # frames to the device

    def note_ack(self, key):
        self.inflight.pop(key, None)
        self.acked[key] = True
        self.acked.move_to_end(key)
        while len(self.acked) > ACKED_KEEP:
            self.acked.popitem(last=False)

    def summary(self, buffer):
        return {"device": self.device_id, "link": self.link.local_url,
                "addr": list(self.addr) if isinstance(self.addr, tuple) else self.addr,
                "uplink_port": self.sock.getsockname()[1] if self.sock else None,
                "frames_up": self.up, "frames_down": self.down,
                "buffered": buffer.pending(self.key), "witness_unacked": len(self.inflight)}


class Relay:
    """See the module docstring. Raises UserError for bad options or link URLs, LinkError when a
    local link cannot be opened, RelayError when the uplink cannot be used."""

    def __init__(self, links, to, *, buffer=DEFAULTS["buffer"], ack_timeout=DEFAULTS["ack_timeout"],
                 silence=DEFAULTS["silence"], probe=DEFAULTS["probe"],
                 replay_rate=DEFAULTS["replay_rate"], idle=DEFAULTS["idle"], bind="",
                 status_file=None, ready_file=None, log=None):
        if not links:
            raise UserError("a relay needs at least one local link (--link udp://HOST:PORT, a "
                            "serial device path such as /dev/ttyACM0, socket://HOST:PORT)")
        self.link_urls = list(links)
        self.uplink = make_uplink(to, bind=bind)
        self.buffer = FrameBuffer(int(check_option("buffer", buffer)))
        self.ack_timeout = check_option("ack_timeout", float(ack_timeout))
        self.silence = check_option("silence", float(silence))
        self.probe = check_option("probe", float(probe))
        self.replay_rate = check_option("replay_rate", float(replay_rate))
        self.idle = check_option("idle", float(idle))
        self.status_file = status_file
        self.ready_file = ready_file
        self.log = log or (lambda msg: None)
        self.links = []
        self.endpoints = {}            # (link index, reply address) -> Endpoint
        self.by_sock = {}              # uplink socket fileno -> Endpoint
        self.is_up = True              # optimistic until the coordinator proves otherwise
        self.down_reason = None
        self.last_heard = None         # monotonic time of the coordinator's last datagram
        self.unanswered_since = None   # first frame sent up since the coordinator last spoke
        self._next_probe = 0.0
        self._index = 0
        self._inbox = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._readers = []
        self.started = None
        self.counters = {"frames_from_devices": 0, "forwarded": 0, "replayed": 0, "probes": 0,
                         "from_coordinator": 0, "to_devices": 0, "to_device_failures": 0,
                         "malformed": 0, "uplink_lost": 0, "uplink_restored": 0,
                         "witness_acked": 0, "witness_skipped_acked": 0,
                         "witness_unanswered": 0, "witness_given_up": 0,
                         "endpoints_opened": 0, "endpoints_reaped": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        try:
            for url in self.link_urls:
                link = make_link(url)
                self.links.append(link)
                try:
                    link.open()
                except LinkError as e:
                    if link.datagram:          # a UDP port that cannot be bound: nothing to wait for
                        raise LinkError("--link %s: %s" % (url, e)) from None
                    # a board not plugged in yet: its reader opens it when it appears
                    self.log("link %s cannot be opened yet (%s); waiting for it" % (url, e))
        except Exception:
            self._close_links()
            raise
        self.uplink.start()
        for i, link in enumerate(self.links):
            t = threading.Thread(target=self._reader, args=(i, link), name="relay-link-%d" % i,
                                 daemon=True)
            t.start()
            self._readers.append(t)
        self.started = time.monotonic()
        if self.ready_file:
            write_json(self.ready_file, self.ready_info(), sort_keys=True)
        return self

    def ready_info(self):
        return {"pid": os.getpid(), "links": [l.local_url for l in self.links],
                "to": self.uplink.url, "buffer": self.buffer.limit}

    def stop(self):
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _close_links(self):
        for link in self.links:
            link.close()

    def close(self):
        self._stop.set()
        self._close_links()
        for t in self._readers:
            t.join(timeout=2)
        for ep in self.endpoints.values():
            ep.sock.close()
        self.uplink.close()
        self._wake_r.close()
        self._wake_w.close()
        if self.ready_file:
            try:
                os.unlink(self.ready_file)
            except OSError:
                pass

    # ------------------------------------------------------------------ device side
    def _reader(self, i, link):
        """A local link's reader thread: queues (link index, frame, reply address) items."""
        while not self._stop.is_set():
            try:
                items = link.recv(0.2)
            except LinkError:
                return
            if items:
                self._inbox.put((i, items))
                try:
                    self._wake_w.send(b"x")
                except OSError:
                    pass

    def _endpoint(self, i, addr):
        key = (i, addr)
        ep = self.endpoints.get(key)
        if ep is None:
            ep = Endpoint(key, self.links[i], addr, self.uplink.open_socket())
            self.endpoints[key] = ep
            self.by_sock[ep.sock.fileno()] = ep
            self.counters["endpoints_opened"] += 1
        return ep

    def from_device(self, i, frame, addr, now=None):
        """One frame from local link i (reply address addr)."""
        now = time.monotonic() if now is None else now
        c = self.counters
        c["frames_from_devices"] += 1
        p = peek(frame)
        if p is None or p.device_id == 0:
            c["malformed"] += 1            # damaged, another version, or a host frame
            return
        ep = self._endpoint(i, addr)
        ep.device_id = p.device_id
        ep.last_seen = now
        ep.up += 1
        self._index += 1
        e = Entry(self._index, p.type, bytes(frame), p)
        if self.is_up and not self.buffer.pending(ep.key):
            if self._send(ep, e, now):
                c["forwarded"] += 1
                return
        self.buffer.push(ep.key, e)

    def _send(self, ep, e, now):
        """Send one entry up; False (and the uplink marked lost) when the socket says the
        coordinator cannot be reached."""
        try:
            ep.sock.send(e.frame)
        except BlockingIOError:
            self._lost("the uplink socket's send buffer is full", now)
            return False
        except OSError as err:
            if err.errno in LOST_ERRNOS:
                self._lost("%s" % (err.strerror or err), now)
                return False
            raise RelayError("uplink %s: send failed: %s" % (self.uplink.url, err)) from None
        if e.type == P.WITNESS:
            e.sends += 1
            ep.inflight[witness_key(e.frame, e.peek)] = (e, now)
        if self.unanswered_since is None:
            self.unanswered_since = now
        return True

    # ------------------------------------------------------------------ coordinator side
    def _drain_uplink(self, ep, now):
        c = self.counters
        for _ in range(_RECV_BURST):
            try:
                data = ep.sock.recv(2048)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno in LOST_ERRNOS:
                    self._lost(err.strerror or str(err), now)
                    return
                raise RelayError("uplink %s: receive failed: %s" % (self.uplink.url, err)) from None
            c["from_coordinator"] += 1
            self.last_heard = now
            self.unanswered_since = None
            if not self.is_up:
                self._restored(now)
            p = peek(data)
            if p is not None:
                k = acked_witness(data, p)
                if k is not None:
                    if k in ep.inflight:
                        c["witness_acked"] += 1
                    ep.note_ack(k)
            try:
                ep.link.send(data, ep.addr)
                c["to_devices"] += 1
                ep.down += 1
            except LinkError:
                c["to_device_failures"] += 1

    def _lost(self, reason, now):
        if not self.is_up:
            return
        self.is_up = False
        self.down_reason = reason
        self.counters["uplink_lost"] += 1
        self._next_probe = now + self.probe
        for ep in self.endpoints.values():
            if ep.inflight:
                again = [e for e, _t in ep.inflight.values() if e.sends < MAX_SENDS]
                self.counters["witness_given_up"] += len(ep.inflight) - len(again)
                self.buffer.restore(ep.key, again)
                ep.inflight.clear()
        self.log("uplink %s lost: %s; buffering (up to %d frames)"
                 % (self.uplink.url, reason, self.buffer.limit))

    def _restored(self, now):
        self.is_up = True
        self.down_reason = None
        self.counters["uplink_restored"] += 1
        for ep in self.endpoints.values():
            ep.tokens = 0.0
        self.log("uplink %s back: replaying %d buffered frame(s)" % (self.uplink.url,
                                                                       len(self.buffer)))

    # ------------------------------------------------------------------ timers
    def _tick(self, now, dt):
        if self.is_up and not self.uplink.connected:
            self._lost(self.uplink.down_reason, now)     # NATS: the client is away from the server
        if self.is_up:
            self._check_acks(now)
        if self.is_up:
            self._replay(now, dt)
        elif now >= self._next_probe:
            self._probe(now)
        self._reap(now)

    def _check_acks(self, now):
        if self.unanswered_since is not None and now - self.unanswered_since > self.silence:
            self._lost("nothing from the coordinator for %g s" % self.silence, now)
            return
        for ep in self.endpoints.values():
            for key, (_e, t) in list(ep.inflight.items()):
                if now - t <= self.ack_timeout:
                    continue
                if self.last_heard is not None and self.last_heard > t:
                    # the coordinator spoke since: it is there and refused this frame (a
                    # duplicate, a record tagged while a handshake was pending); the device
                    # resends what it has not seen ACKed
                    del ep.inflight[key]
                    self.counters["witness_unanswered"] += 1
                    continue
                self._lost("WITNESS %d of device %s (boot %d) not acknowledged within %g s, "
                           "nothing from the coordinator since"
                           % (key[1], ep.device_id, key[0], self.ack_timeout), now)
                return

    def _head(self, ep):
        """ep's oldest buffered frame, past WITNESS frames sent before whose record the
        coordinator has ACKed since (the same bytes again would be refused as a duplicate; a
        device's own resend of the record is a new frame, and is sent: the device needs the ACK)."""
        while True:
            e = self.buffer.head(ep.key)
            if e is None or e.type != P.WITNESS or not e.sends or \
                    witness_key(e.frame, e.peek) not in ep.acked:
                return e
            self.buffer.pop(ep.key)
            self.counters["witness_skipped_acked"] += 1

    def _probe(self, now):
        self._next_probe = now + self.probe
        for ep in list(self.endpoints.values()):
            e = self._head(ep)
            if e is None:
                continue
            try:
                ep.sock.send(e.frame)
                self.counters["probes"] += 1
            except OSError:
                pass

    def _replay(self, now, dt):
        """Send each device's buffered frames, oldest first, at `replay_rate` cost units per
        second (live frames wait behind them and count too: from_device() queues them)."""
        burst = max(_COST_MAX, self.replay_rate * 0.05)
        for ep in list(self.endpoints.values()):
            if not self.buffer.pending(ep.key):
                continue
            ep.tokens = min(burst, ep.tokens + self.replay_rate * dt)
            while True:
                e = self._head(ep)
                if e is None:
                    break
                cost = frame_cost(e)
                if ep.tokens < cost:
                    break
                if not self._send(ep, e, now):
                    return                 # lost again: the entry stays at the front
                self.buffer.pop(ep.key)
                ep.tokens -= cost
                self.counters["replayed"] += 1

    def _reap(self, now):
        """Close the socket of a device silent for `idle` s with nothing buffered (a device that
        rebooted onto another source port, a board unplugged for good)."""
        for key, ep in list(self.endpoints.items()):
            if now - ep.last_seen > self.idle and not self.buffer.pending(key) and not ep.inflight:
                del self.endpoints[key]
                self.by_sock.pop(ep.sock.fileno(), None)
                ep.sock.close()
                self.buffer.forget(key)
                self.counters["endpoints_reaped"] += 1

    # ------------------------------------------------------------------ loop
    def run(self, duration=None, status_every=1.0, on_status=None):
        """Serve until stop() or `duration` s; writes the status file every `status_every` s
        and calls on_status(status) then."""
        end = None if duration is None else time.monotonic() + duration
        last = time.monotonic()
        next_status = last
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                socks = [self._wake_r] + [ep.sock for ep in self.endpoints.values()]
                timeout = 0.02 if (self.buffer.count and self.is_up) else 0.1
                try:
                    r, _w, _x = select.select(socks, [], [], timeout)
                except ValueError:        # a socket closed under us (reaped): try again
                    continue
                now = time.monotonic()
                for s in r:
                    if s is self._wake_r:
                        try:
                            while s.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    else:
                        ep = self.by_sock.get(s.fileno())
                        if ep is not None:
                            self._drain_uplink(ep, now)
                while True:
                    try:
                        i, items = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    for frame, addr in items:
                        self.from_device(i, frame, addr, now)
                self._tick(now, now - last)
                last = now
                if now >= next_status:
                    next_status = now + status_every
                    st = self.status()
                    if self.status_file:
                        write_json(self.status_file, st, sort_keys=True)
                    if on_status is not None:
                        on_status(st)
        finally:
            st = self.status()
            if self.status_file:
                write_json(self.status_file, st, sort_keys=True)
        return st

    def status(self):
        now = time.monotonic()
        return {
            "uplink": {"to": self.uplink.url, "up": self.is_up, "reason": self.down_reason,
                       "last_heard_s": None if self.last_heard is None
                       else round(now - self.last_heard, 3)},
            "counters": dict(self.counters),
            "buffer": self.buffer.stats(),
            "witness_unacked": sum(len(ep.inflight) for ep in self.endpoints.values()),
            "links": [l.stats() for l in self.links],
            "devices": [ep.summary(self.buffer) for ep in self.endpoints.values()],
            "uptime_s": None if self.started is None else round(now - self.started, 3),
        }
