"""Frames a keyed device sends before its session handshake completes (issue 13 follow-up).

A device beats from boot: its first frames go out under its device key K before the host's
CHALLENGE comes back. They are not ingested (no session yet) and, for a device that then
completes the handshake, they are not rejections either: status counts them as
`frames_awaiting_handshake`, outside `frames_rejected` (the live table's alarm). A handshake
that never completes (a replayed HELLO) moves the frames it held to `no_session`. Frames under
K that arrive in the same receive block as the proof (the ACK of the CHALLENGE) are taken
before it. A frame of another boot of a device with an established session that verifies
under neither key is a forgery (`auth`), not `no_session`."""
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


def _prove_and_beat(c, dev, challenge):
    """The device's proof (ACK of `challenge` under the session key), then 4 beats under it;
    the coordinator's status once they are in."""
    ds = dev.session
    chf = ds.accept_challenge(challenge)
    dev.auth = ds.auth
    dev.send(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": chf.seq})
    for b in range(10, 14):
        dev.send(P.TELEMETRY, tel(b))
    assert wait(lambda: c.counters["beats"] >= 4)
    return c.status_now()


def test_frames_before_the_handshake_are_not_rejections(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(21)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=21, key=key)
        ch = _hello_then_beats(dev, 4)                  # 5 frames under K, one of them batched
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 5), c.status_now()
        st = _prove_and_beat(c, dev, ch)
        assert st["frames_awaiting_handshake"] == 5, st
        assert "no_session" not in st["frames_rejected"], st["frames_rejected"]
        assert sum(st["frames_rejected"].values()) == 0, st["frames_rejected"]

        # a HELLO nobody completes (a replay of this boot's HELLO with another nonce), then
        # frames under K of that boot: held while it is pending, rejections once it expires
        replayer = FakeDevice(addr, device_id=21, boot_id=0x1111, key=key)
        _hello_then_beats(replayer, 2)
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 8), (
            c.status_now()["frames_awaiting_handshake"], c.status_now()["frames_rejected"])
        c.handshakes.ttl_s = 0.05                        # the coordinator's tick expires it
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 5), c.status_now()
        st = c.status_now()
        assert st["frames_rejected"].get("no_session") == 3, st["frames_rejected"]
    finally:
        stop(c, th)


def test_frames_under_an_old_session_key_after_a_restart_are_no_session(tmp_path):
    """After a host restart a device's frames are tagged with the session key of the host it
    had (never stored): they verify under no key the new host holds and no handshake is
    pending, so they are rejections ("no_session") from the start, and the host asks the
    device for a handshake."""
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(22)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=22, key=key)
        dev.handshake()
        dev.send(P.TELEMETRY, tel(1))
        assert wait(lambda: c.counters["beats"] >= 1)
    finally:
        stop(c, th)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev.addr = addr
        for b in range(2, 5):
            dev.send(P.TELEMETRY, tel(b))
        assert wait(lambda: c.status_now()["frames_rejected"].get("no_session") == 3), \
            c.status_now()["frames_rejected"]
        assert c.status_now()["frames_awaiting_handshake"] == 0
        assert c.counters["handshake_requests"] >= 1
    finally:
        stop(c, th)


def _k_frames_before_the_hello(dev, n):
    """n TELEMETRY (the last two batched) and a HEARTBEAT under K of a boot whose HELLO the
    host never saw: a host that opened the device's serial port after the HELLO went out (the
    OS discards what was buffered) sees the device's beats under K first."""
    ds = dev.session
    ds.restart()
    dev.auth = ds.device_auth
    for b in range(1, n - 1):
        dev.send(P.TELEMETRY, tel(b))
    dev.send(P.TELEMETRY, {"records": [tel(n - 1), tel(n)]}, batch=True)
    dev.send(P.HEARTBEAT, HB)


def test_frames_under_k_before_a_hello_the_host_missed_are_held(tmp_path):
    """The host asks for the handshake (a K-tagged TIME_SYNC request); the device's frames of
    that boot under K are held, like those of a pending handshake, and the HELLO that answers
    the request takes them over: once the handshake completes nothing was rejected (the
    emulated Pico's 1 `no_session` when the coordinator opened its port mid-boot)."""
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(23)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=23, key=key)
        _k_frames_before_the_hello(dev, 4)             # 4 frames under K, one of them batched
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 4), (
            c.status_now()["frames_awaiting_handshake"], c.status_now()["frames_rejected"])
        req = dev.recv(P.TIME_SYNC)                     # the host asks for a handshake, under K
        assert req.boot_id != dev.boot_id and c.counters["handshake_requests"] == 1
        ds = dev.session
        dev.send(P.HELLO, dict(HELLO, nonce=ds.nonce))
        while True:
            raw = dev.sock.recv(512)
            if raw[1] == P.CHALLENGE:
                break
        st = _prove_and_beat(c, dev, raw)
        assert st["frames_rejected"] == {}, st["frames_rejected"]
        assert st["frames_awaiting_handshake"] == 4, st["frames_awaiting_handshake"]
        assert c.counters["handshakes_completed"] == 1
    finally:
        stop(c, th)


def test_frames_under_k_before_a_hello_that_never_comes_are_no_session(tmp_path):
    """Frames under K of a boot with no HELLO (a replayed beat of an old boot: the real device
    answers the request with a HELLO of its current boot, if at all) are held only for the
    handshake time-out, then rejections ("no_session")."""
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(24)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=24, key=key)
        _k_frames_before_the_hello(dev, 4)
        assert wait(lambda: c.status_now()["frames_awaiting_handshake"] == 4)
        c.handshakes.ttl_s = 0.05                        # the coordinator's tick expires them
        assert wait(lambda: c.status_now()["frames_rejected"].get("no_session") == 4), \
            c.status_now()["frames_rejected"]
        assert c.status_now()["frames_awaiting_handshake"] == 0
        assert not c.handshakes.before_hello
    finally:
        stop(c, th)


def test_frames_under_k_just_before_the_proof_are_not_auth_failures(tmp_path):
    """A device's last frames under K and its ACK(CHALLENGE) right behind them arrive in one
    receive block; the ACK (per-frame path) must not establish the session before those
    TELEMETRY frames (batch path) are taken, or they fail under the new session key ("auth",
    the emulation's 1 to 4 rejections at start)."""
    data = tmp_path / "data"
    data.mkdir()
    ks = Keystore(str(data / "keys.json"))
    devs = list(range(31, 39))
    keys = {d: ks.add(d) for d in devs}
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        fakes = [FakeDevice(addr, device_id=d, key=keys[d]) for d in devs]
        chs = []
        for dev in fakes:
            ds = dev.session
            ds.restart()
            dev.auth = ds.device_auth
            dev.send(P.HELLO, dict(HELLO, nonce=ds.nonce))
        for dev in fakes:
            while True:
                data_ = dev.sock.recv(512)
                if data_[1] == P.CHALLENGE:
                    chs.append(data_)
                    break
        burst = []
        for dev, ch in zip(fakes, chs):        # 3 beats under K, then the proof, back to back
            burst += [(dev, dev.frame(P.TELEMETRY, tel(b))) for b in range(1, 4)]
            chf = dev.session.accept_challenge(ch)
            dev.auth = dev.session.auth
            burst.append((dev, dev.frame(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK,
                                                 "ref": chf.seq})))
        for dev, raw in burst:
            dev.sock.sendto(raw, addr)
        assert wait(lambda: c.counters["handshakes_completed"] == len(devs))
        time.sleep(0.3)
        st = c.status_now()
        assert st["frames_rejected"] == {}, st["frames_rejected"]
        assert st["frames_awaiting_handshake"] == 3 * len(devs), st["frames_awaiting_handshake"]
    finally:
        stop(c, th)


def test_forged_frame_of_another_boot_is_auth_not_no_session(tmp_path):
    """A device with an established session: a frame claiming another boot of it that verifies
    under neither its session key nor its device key K is a forgery ("auth"; the host does not
    ask the real device for a handshake because of it), not a frame awaiting a session."""
    import os as _os
    from shared.auth import Auth
    data = tmp_path / "data"
    data.mkdir()
    key = Keystore(str(data / "keys.json")).add(41)
    c, th, addr = make_coord(tmp_path, **{"admission.unknown_devices": "reject"})
    try:
        dev = FakeDevice(addr, device_id=41, key=key)
        dev.handshake()
        assert wait(lambda: c.counters["handshakes_completed"] == 1)
        req0 = c.counters["handshake_requests"]
        forger = FakeDevice(addr, device_id=41, boot_id=0x7777)
        forger.auth = Auth(_os.urandom(32))
        for _ in range(3):
            forger.send(P.HEARTBEAT, HB)
        assert wait(lambda: c.status_now()["frames_rejected"].get("auth") == 3), \
            c.status_now()["frames_rejected"]
        assert "no_session" not in c.status_now()["frames_rejected"]
        assert c.counters["handshake_requests"] == req0
    finally:
        stop(c, th)
