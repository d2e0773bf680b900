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
