"""The coordinator over a serial link: a pty pair, COBS framing, unplug and replug."""
import os
import threading
import time
import tty

from becomingone.config import load_config
from becomingone.coordinator.service import Coordinator
from shared import cobs
from shared import protocol as P
from tests.test_coordinator import HELLO, tel, wait


class PtyDevice:
    def __init__(self, device_id=21, boot_id=77):
        self.m, self.s = os.openpty()
        tty.setraw(self.m)
        tty.setraw(self.s)
        self.path = os.ttyname(self.s)
        self.device_id, self.boot_id, self.seq = device_id, boot_id, 0
        self.deframer = cobs.Deframer()

    def send(self, mtype, fields, **kw):
        f = P.encode(mtype, fields, self.device_id, self.boot_id, self.seq, 0, 1000 + self.seq, **kw)
        self.seq += 1
        os.write(self.m, cobs.encode(f))

    def recv(self, want, timeout=3.0):
        end = time.time() + timeout
        os.set_blocking(self.m, False)
        while time.time() < end:
            try:
                data = os.read(self.m, 4096)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            for fr in self.deframer.feed(data):
                f = P.decode(fr)
                if f.type == want:
                    return f
        raise AssertionError("no %s from the host" % P.TYPE_NAMES[want])

    def unplug(self):
        os.close(self.m)
        os.close(self.s)


def test_serial_link_session_witness_and_replug(tmp_path):
    dev = PtyDevice()
    link_path = str(tmp_path / "ttyBOARD")
    os.symlink(dev.path, link_path)
    cfg = load_config(overrides={"data_dir": str(tmp_path / "data"), "security.intrinsic": False,
                                 "ledger.pulse_summary_every": 0,
                                 # a keyless fake board: ledgered only when unknown devices are accepted
                                 "admission.unknown_devices": "accept", "devices.takeover_s": 0.0})
    c = Coordinator(cfg, links=[link_path]).start()
    th = threading.Thread(target=c.run, daemon=True)
    th.start()
    try:
        os.write(dev.m, b"\r\x02noise before the first frame")
        dev.send(P.HELLO, HELLO)
        for b in range(1, 21):
            dev.send(P.TELEMETRY, tel(b))
        assert dev.recv(P.TIME_SYNC).boot_id == 77
        assert wait(lambda: c.counters["beats"] == 20)
        dev.send(P.WITNESS, {"witness_id": 4, "kind": 1, "beat": 20, "decision": 3, "threat": 1,
                             "coherence": 1, "value": 0, "pow_bits": 0, "nonce": 0})
        ack = dev.recv(P.ACK)
        assert ack.fields["ref"] == 4 and ack.fields["status"] == P.ACK_OK
        # unplug the board; plug a rebooted one back at the same path
        dev.unplug()
        os.unlink(link_path)
        assert wait(lambda: c.links[0].counters["disconnects"] == 1)
        time.sleep(0.2)
        dev2 = PtyDevice(boot_id=78)
        os.symlink(dev2.path, link_path)
        assert wait(lambda: c.links[0].is_open, timeout=8)
        dev2.send(P.HELLO, HELLO)
        dev2.send(P.TELEMETRY, tel(1))
        assert wait(lambda: c.counters["beats"] == 21)
        assert c.sessions.get(21).boot_id == 78
        assert c.supervisors[0].metrics()["state"] == "running"
        dev2.unplug()
    finally:
        c.stop()
        th.join(10)
    assert not th.is_alive()


def test_host_opening_a_keyed_boards_port_mid_stream_rejects_nothing(tmp_path):
    """Lane 4's flash test, replayed on a pty: the coordinator opens the serial port of a keyed
    board that sent its HELLO (under its device key K) before the port was open -- opening a
    port discards what the OS buffered, so the host starts mid-frame and never sees that HELLO.
    The partial frame is a link "resync", not a rejection; the board's beats under K are held
    while the host asks it for a handshake over the same port (a serial link has no reply
    address); the board's HELLO, CHALLENGE and ACK complete it, and nothing was rejected."""
    from becomingone.ingest.keystore import Keystore
    from becomingone.wire.handshake import DeviceSession
    from tests.test_handshake_counting import HB

    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(25)
    dev = PtyDevice(device_id=25, boot_id=91)
    ds = DeviceSession(key, 25, 91)
    ds.restart()
    hello = P.encode(P.HELLO, dict(HELLO, nonce=ds.nonce), 25, 91, 0, 0, 1000,
                     auth=ds.device_auth)
    dev.seq = 1
    cfg = load_config(overrides={"data_dir": str(data), "security.intrinsic": False,
                                 "ledger.pulse_summary_every": 0,
                                 "admission.unknown_devices": "reject"})
    c = Coordinator(cfg, links=[dev.path]).start()
    th = threading.Thread(target=c.run, daemon=True)
    th.start()
    try:
        framed = cobs.encode(hello)
        os.write(dev.m, framed[len(framed) // 2:])         # the HELLO's tail: the port opened late
        for b in range(1, 4):
            dev.send(P.TELEMETRY, tel(b), auth=ds.device_auth)
        dev.send(P.HEARTBEAT, HB, auth=ds.device_auth)
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 4), c.status_now()
        os.set_blocking(dev.m, False)
        ch, end = None, time.time() + 3
        while ch is None and time.time() < end:          # the request (under K), then CHALLENGE
            try:
                chunk = os.read(dev.m, 4096)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            for fr in dev.deframer.feed(chunk):
                if fr[1] == P.TIME_SYNC:
                    assert P.decode(fr, auth=ds.device_auth).boot_id != 91
                    dev.send(P.HELLO, dict(HELLO, nonce=ds.nonce), auth=ds.device_auth)
                elif fr[1] == P.CHALLENGE:
                    ch = fr
        assert ch is not None, c.counters
        chf = ds.accept_challenge(ch)
        dev.send(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": chf.seq},
                 auth=ds.auth)
        for b in range(4, 8):
            dev.send(P.TELEMETRY, tel(b), auth=ds.auth)
        assert wait(lambda: c.counters["beats"] >= 4), c.counters
        st = c.status_now()
        assert st["frames_rejected"] == {}, st["frames_rejected"]
        assert st["frames_awaiting_handshake"] == 4
        assert c.counters["handshake_requests"] == 1 and c.counters["handshakes_completed"] == 1
        assert c.links[0].counters["resync"] == 1 and c.links[0].counters["cobs"] == 0
    finally:
        c.stop()
        th.join(10)
        dev.unplug()
