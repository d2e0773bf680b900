"""Frames a keyed device sends before its session handshake completes (issue 13 follow-up).

A device beats from boot: its first frames go out under its device key K before the host's
CHALLENGE comes back. They are not ingested (no session yet) and, for a device that then
completes the handshake, they are not rejections either: status counts them as
`frames_awaiting_handshake`, outside `frames_rejected` (the live table's alarm). A handshake
that never completes (a replayed HELLO) moves the frames it held to `no_session`."""
import time

from becomingone.ingest.keystore import Keystore
from shared import protocol as P
from tests.test_coordinator import FakeDevice, HELLO, make_coord, stop, tel, wait


HB = dict.fromkeys(P.HEARTBEAT_FIELDS, 0)


def _hello_then_beats(dev, n):
    """HELLO under K with a fresh nonce, then n TELEMETRY (unbatched and batched) and a
    HEARTBEAT under K before the CHALLENGE is read (n + 1 frames): what a booting device
    sends."""
    ds = dev.session
    ds.restart()
    dev.auth = ds.device_auth
    dev.send(P.HELLO, dict(HELLO, nonce=ds.nonce))
    time.sleep(0.2)                    # the HELLO is processed first: a handshake is pending
    for b in range(1, n):
        dev.send(P.TELEMETRY, tel(b))
    dev.send(P.TELEMETRY, {"records": [tel(n), tel(n + 1)]}, batch=True)
    dev.send(P.HEARTBEAT, HB)          # the per-frame path
    while True:                        # the CHALLENGE (and anything else) the host sent
        data = dev.sock.recv(512)
        if data[1] == P.CHALLENGE:
            return data


def test_frames_before_the_handshake_are_not_rejections(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(21)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=21, key=key)
        ch = _hello_then_beats(dev, 4)                  # 5 frames under K, one of them batched
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 5), c.status_now()
        ds = dev.session
        chf = ds.accept_challenge(ch)
        dev.auth = ds.auth
        dev.send(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": chf.seq})
        for b in range(10, 14):
            dev.send(P.TELEMETRY, tel(b))
        assert wait(lambda: c.counters["beats"] >= 4)
        st = c.status_now()
        assert st["frames_awaiting_handshake"] == 5, st
        assert "no_session" not in st["frames_rejected"], st["frames_rejected"]
        assert sum(st["frames_rejected"].values()) == 0, st["frames_rejected"]

        # a HELLO nobody completes (a replay of this boot's HELLO with another nonce), then
        # frames under K of that boot: held while it is pending, rejections once it expires
        replayer = FakeDevice(addr, device_id=21, boot_id=0x1111, key=key)
        _hello_then_beats(replayer, 2)
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 8), (c.status_now()["frames_awaiting_handshake"], c.status_now()["frames_rejected"], c.status_now()["handshakes"])
        c.handshakes.ttl_s = 0.05                        # the coordinator's tick expires it
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 5), c.status_now()
        st = c.status_now()
        assert st["frames_rejected"].get("no_session") == 3, st["frames_rejected"]
    finally:
        stop(c, th)


def test_frames_without_any_pending_handshake_stay_no_session(tmp_path):
    """After a host restart a device's frames verify under no key and no handshake is pending:
    rejections ("no_session"), and the host asks the device for a handshake."""
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(22)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=22, key=key)
        dev.auth = dev.session.device_auth
        for b in range(1, 4):
            dev.send(P.TELEMETRY, tel(b))
        assert wait(lambda: c.status_now()["frames_rejected"].get("no_session") == 3)
        assert c.status_now()["frames_awaiting_handshake"] == 0
        assert c.counters["handshake_requests"] >= 1
    finally:
        stop(c, th)
