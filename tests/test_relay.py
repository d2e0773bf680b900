"""The relay node in one process (becomingone/relay/): its buffer's eviction order, frame peeking,
and a Relay between loopback "devices" and a loopback "coordinator" socket: byte-identical
forwarding, a socket per device, replies routed back, the uplink lost (ICMP refused, a WITNESS
never acknowledged), buffered, probed and replayed in order. tests/test_relay_e2e.py runs the
real processes (coordinator, relay, MicroPython devices)."""
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from becomingone.errors import UserError
from becomingone.relay.buffer import Entry, FrameBuffer
from becomingone.relay.frames import acked_witness, peek, witness_key
from becomingone.relay.service import Relay
from shared import protocol as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WIT = {"witness_id": 0, "kind": P.WITNESS_DECISION, "beat": 7,
       "decision": 1, "threat": 40000, "coherence": 30000, "value": 5, "pow_bits": 0, "nonce": 0}


def tel(beat):
    return {"beat": beat, "period_us": 4211, "lateness_us": 3, "dT_re": 1000 + beat,
            "dT_im": -50, "dE0": 4000, "dEL": 3900, "n_samples": 4, "coherence": 60000,
            "pid_error": 0, "pid_output": 32768, "threat": 100, "o_weight": 22938,
            "decision_state": 0, "level": -800, "kurt": 400, "crest": 480, "anoms": 2}


def witness(dev, boot, seq, wid):
    return P.encode(P.WITNESS, dict(WIT, witness_id=wid), dev, boot, seq)


def telemetry(dev, boot, seq):
    return P.encode(P.TELEMETRY, tel(seq), dev, boot, seq)


def ack(boot, wid, seq=1):
    return P.encode(P.ACK, {"acked_type": P.WITNESS, "status": P.ACK_OK, "ref": wid}, 0, boot, seq)


def entry(i, frame):
    p = peek(frame)
    return Entry(i, p.type, frame, p)


# ------------------------------------------------------------------ frames and buffer
def test_peek_reads_the_clear_header_and_refuses_damage():
    f = witness(5, 77, 3, 12)
    p = peek(f)
    assert (p.type, p.device_id, p.boot_id, p.seq) == (P.WITNESS, 5, 77, 3)
    assert witness_key(f, p) == (77, 12)
    a = ack(77, 12)
    assert acked_witness(a, peek(a)) == (77, 12)
    c = P.encode(P.ACK, {"acked_type": P.CONFIG, "status": 0, "ref": 12}, 0, 77, 1)
    assert acked_witness(c, peek(c)) is None
    bad = bytearray(f)
    bad[20] ^= 1
    assert peek(bytes(bad)) is None              # CRC
    assert peek(f[:10]) is None


def test_buffer_keeps_witness_over_telemetry_and_counts_drops():
    b = FrameBuffer(4)
    for s in range(4):
        assert b.push("a", entry(s, telemetry(1, 9, s)))
    assert b.push("a", entry(10, witness(1, 9, 10, 0)))        # evicts the oldest TELEMETRY
    assert b.push("b", entry(11, witness(2, 9, 11, 0)))
    assert b.push("b", entry(12, witness(2, 9, 12, 1)))
    assert b.push("a", entry(13, witness(1, 9, 13, 1)))        # only WITNESS left now
    assert not b.push("a", entry(14, witness(1, 9, 14, 2)))    # full of WITNESS: the new one goes
    assert not b.push("a", entry(15, telemetry(1, 9, 15)))     # TELEMETRY cannot evict WITNESS
    assert len(b) == 4 and b.peak == 4
    st = b.stats()
    assert st["dropped"] == {"TELEMETRY": 5, "WITNESS": 1}, st
    assert st["buffered"] == {"TELEMETRY": 4, "WITNESS": 4}, st
    got = []
    while b.head("a") is not None:
        got.append(b.pop("a").index)
    assert got == [10, 13]                                      # in order, evicted ones skipped
    assert [b.pop("b").index, b.pop("b").index] == [11, 12] and len(b) == 0


def test_buffer_restore_puts_sent_records_back_in_front_in_order():
    b = FrameBuffer(10)
    b.push("a", entry(5, telemetry(1, 9, 5)))
    b.restore("a", [entry(3, witness(1, 9, 3, 1)), entry(1, witness(1, 9, 1, 0))])
    assert [b.pop("a").index for _ in range(3)] == [1, 3, 5]


def test_bad_options_say_what_is_allowed():
    with pytest.raises(UserError, match="--buffer must be 1..1000000"):
        Relay(["udp://127.0.0.1:0"], "udp://127.0.0.1:9", buffer=0)
    with pytest.raises(UserError, match=r"allowed: udp://HOST:PORT, nats://HOST:PORT"):
        Relay(["udp://127.0.0.1:0"], "tcp://127.0.0.1:4222")
    with pytest.raises(UserError, match=r"nats://HOST:PORT\[/SUBJECT_PREFIX\]"):
        Relay(["udp://127.0.0.1:0"], "nats://127.0.0.1")
    with pytest.raises(UserError, match="port must be 1..65535"):
        Relay(["udp://127.0.0.1:0"], "udp://127.0.0.1:0")
    with pytest.raises(UserError, match="at least one local link"):
        Relay([], "udp://127.0.0.1:9")
    with pytest.raises(UserError, match="--ack-timeout must be"):
        Relay(["udp://127.0.0.1:0"], "udp://127.0.0.1:9", ack_timeout=0)


def test_cli_bad_arguments_exit_2_with_the_reason():
    def cli(*a):
        return subprocess.run([sys.executable, "-m", "becomingone.cli", "relay", *a], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    r = cli("--to", "udp://127.0.0.1:9")
    assert r.returncode == 2 and "at least one local link" in r.stderr
    r = cli("--to", "tcp://x:1", "--link", "udp://127.0.0.1:0")
    assert r.returncode == 2 and "unknown uplink scheme 'tcp'" in r.stderr
    r = cli("--to", "udp://127.0.0.1:9", "--link", "bogus")
    assert r.returncode == 2 and "cannot tell the link type" in r.stderr
    r = cli("--to", "udp://127.0.0.1:9", "--link", "udp://127.0.0.1:0", "--replay-rate", "0")
    assert r.returncode == 2 and "--replay-rate must be" in r.stderr


def test_a_board_not_plugged_in_yet_is_waited_for_a_busy_udp_port_is_an_error(tmp_path):
    from becomingone.errors import LinkError
    r = Relay([str(tmp_path / "ttyACM-missing")], "udp://127.0.0.1:9").start()
    try:
        link = r.status()["links"][0]
        assert not link["open"] and "No such file" in link["last_error"]
    finally:
        r.close()
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(LinkError, match=r"--link udp://127.0.0.1:%d" % busy.getsockname()[1]):
            Relay(["udp://127.0.0.1:%d" % busy.getsockname()[1]], "udp://127.0.0.1:9").start()
    finally:
        busy.close()


# ------------------------------------------------------------------ a relay on loopback
class Coordinator:
    """A loopback UDP socket standing for the coordinator; close()/reopen() on the same port."""

    def __init__(self, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(2.0)
        self.port = self.sock.getsockname()[1]

    def recv(self, n=1):
        out = []
        for _ in range(n):
            out.append(self.sock.recvfrom(2048))
        return out

    def quiet(self, t=0.3):
        self.sock.settimeout(t)
        try:
            return self.sock.recvfrom(2048)
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(2.0)

    def drain(self, quiet=1.0):
        """Every frame until `quiet` s pass without one, ACKing each WITNESS as a coordinator
        does (a WITNESS left unacknowledged marks the uplink lost again)."""
        got = []
        while True:
            m = self.quiet(quiet)
            if m is None:
                return got
            got.append(m[0])
            p = peek(m[0])
            if p.type == P.WITNESS:
                self.sock.sendto(ack(p.boot_id, witness_key(m[0], p)[1]), m[1])

    def close(self):
        self.sock.close()


@pytest.fixture
def relay_on_loopback():
    made = []

    def make(coord_port, **kw):
        r = Relay(["udp://127.0.0.1:0"], "udp://127.0.0.1:%d" % coord_port, **kw).start()
        t = threading.Thread(target=r.run, kwargs={"status_every": 0.2}, daemon=True)
        t.start()
        made.append((r, t))
        host, port = r.links[0].local_url[6:].rsplit(":", 1)
        return r, (host, int(port))
    yield make
    for r, t in made:
        r.stop()
        t.join(timeout=5)
        r.close()


def dev_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_forwards_bytes_unchanged_a_socket_per_device_and_routes_replies(relay_on_loopback):
    co = Coordinator()
    r, local = relay_on_loopback(co.port)
    d1, d2 = dev_socket(), dev_socket()
    f1, f2 = telemetry(1, 11, 0), telemetry(2, 22, 0)
    d1.sendto(f1, local)
    (g1, a1), = co.recv()
    d2.sendto(f2, local)
    (g2, a2), = co.recv()
    assert (g1, g2) == (f1, f2) and a1 != a2        # bytes untouched, an address per device
    garbage = bytearray(telemetry(1, 11, 1))
    garbage[30] ^= 4
    d1.sendto(bytes(garbage), local)                  # damaged: dropped, counted
    assert co.quiet() is None
    reply = ack(22, 0)
    co.sock.sendto(reply, a2)                         # the coordinator answers device 2 ...
    assert d2.recvfrom(2048)[0] == reply              # ... and device 2 gets it
    d1.settimeout(0.3)
    with pytest.raises(socket.timeout):
        d1.recvfrom(2048)
    st = r.status()
    assert st["counters"]["malformed"] == 1 and st["counters"]["forwarded"] == 2
    assert sorted(d["device"] for d in st["devices"]) == [1, 2]
    co.close()


def test_lost_uplink_buffers_probes_and_replays_in_order(relay_on_loopback):
    co = Coordinator()
    port = co.port
    r, local = relay_on_loopback(port, ack_timeout=0.5, probe=0.2, replay_rate=1000)
    d = dev_socket()
    seq = 0
    d.sendto(witness(3, 5, seq, 0), local)
    (w0, a), = co.recv()
    co.sock.sendto(ack(5, 0), a)
    assert wait(lambda: r.counters["witness_acked"] == 1)
    # a WITNESS that the coordinator receives but never acknowledges: the uplink is lost
    seq += 1
    d.sendto(witness(3, 5, seq, 1), local)
    co.recv()
    assert wait(lambda: not r.is_up), r.status()
    assert "not acknowledged" in r.down_reason
    # while lost: nothing goes up but the probe (the oldest buffered frame: that WITNESS)
    sent = [(P.WITNESS, 1)]
    for k in range(20):
        seq += 1
        if k % 5 == 4:
            d.sendto(witness(3, 5, seq, 2 + k // 5), local)
            sent.append((P.WITNESS, 2 + k // 5))
        else:
            d.sendto(telemetry(3, 5, seq), local)
            sent.append((P.TELEMETRY, seq))
    assert wait(lambda: r.counters["frames_from_devices"] == seq + 1)
    probes = [peek(f) for f, _a in co.recv(2)]
    assert all(p.type == P.WITNESS and p.seq == 1 for p in probes)   # the head, again and again
    # the coordinator speaks (it took the probe: its ACK): the uplink is back, the buffer
    # drains in order, past the WITNESS just ACKed (sending it again would be a duplicate)
    co.sock.sendto(ack(5, 1), a)
    got = co.drain()
    seqs = [peek(f).seq for f in got]
    assert seqs == sorted(seqs) and seqs[-1] == seq and set(range(2, seq + 1)) <= set(seqs), seqs
    assert [s for s in seqs if s == 1] == [1] * (len(seqs) - (seq - 1)), seqs   # probes only
    assert r.counters["witness_skipped_acked"] == 1
    st = r.status()
    assert st["uplink"]["up"] and st["counters"]["uplink_lost"] == 1
    assert st["counters"]["uplink_restored"] == 1 and st["buffer"]["frames"] == 0
    assert st["buffer"]["buffered"]["WITNESS"] >= 5 and st["buffer"]["buffered"]["TELEMETRY"] == 16
    assert st["counters"]["replayed"] >= 20 and not st["buffer"]["dropped"]
    co.close()


def test_refused_port_marks_the_uplink_lost_and_a_small_buffer_keeps_witness(relay_on_loopback):
    co = Coordinator()
    port = co.port
    r, local = relay_on_loopback(port, buffer=3, probe=0.2, replay_rate=1000)
    d = dev_socket()
    d.sendto(telemetry(4, 8, 0), local)
    (_f, a), = co.recv()
    co.close()                                        # the coordinator's port is closed: ICMP
    for s in range(1, 6):
        d.sendto(telemetry(4, 8, s), local)
        time.sleep(0.05)
    assert wait(lambda: not r.is_up), r.status()
    d.sendto(witness(4, 8, 6, 0), local)
    d.sendto(witness(4, 8, 7, 1), local)
    d.sendto(telemetry(4, 8, 8), local)
    assert wait(lambda: r.counters["frames_from_devices"] == 9)
    st = r.status()
    assert st["buffer"]["frames"] == 3
    assert st["buffer"]["dropped"].get("WITNESS", 0) == 0 and st["buffer"]["dropped"]["TELEMETRY"] >= 3
    co2 = Coordinator(port)                           # back on the same port
    # the probe (oldest buffered frame, a TELEMETRY) gets no answer of its own: the coordinator's
    # next datagram to the device (here an ACK) marks the uplink back
    m = co2.recv()[0]
    co2.sock.sendto(ack(8, 99), m[1])
    got = {peek(f).seq for f in co2.drain()}
    assert {6, 7} <= got, got                         # both WITNESS records went up
    assert r.status()["uplink"]["up"]
    co2.close()


def test_a_witness_refused_by_a_talking_coordinator_is_not_a_lost_uplink(relay_on_loopback):
    co = Coordinator()
    r, local = relay_on_loopback(co.port, ack_timeout=0.4, probe=0.2)
    d = dev_socket()
    d.sendto(witness(6, 3, 0, 0), local)
    (_f, a), = co.recv()
    # no ACK for it (refused: a duplicate, a record tagged under the device key), but the
    # coordinator speaks after it: the uplink is evidently there
    co.sock.sendto(P.encode(P.ACK, {"acked_type": P.CONFIG, "status": 0, "ref": 1}, 0, 3, 1), a)
    assert wait(lambda: r.counters["witness_unanswered"] == 1)
    assert r.is_up and r.counters["uplink_lost"] == 0
    # the same with a silent coordinator: lost
    d.sendto(witness(6, 3, 1, 1), local)
    co.recv()
    assert wait(lambda: not r.is_up) and r.counters["uplink_lost"] == 1
    co.close()


def test_a_relay_on_a_serial_port_stops_cleanly():
    # SIGTERM closes the links while their reader threads read: the serial reader used to die
    # with pyserial's TypeError (a traceback on every stop) instead of ending on LinkClosed
    master, slave = pty.openpty()
    try:
        for _ in range(3):
            p = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "relay", "--link", os.ttyname(slave),
                                  "--to", "udp://127.0.0.1:9", "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            assert p.stdout.readline().startswith("ready "), p.stderr.read()
            time.sleep(0.3)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0 and "Traceback" not in err and "Exception" not in err, err
            assert '"stopped"' in out or "stopped " in out, out
    finally:
        os.close(master)
        os.close(slave)
