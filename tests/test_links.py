import os
import socket
import time

import pytest

from becomingone.errors import LinkClosed, LinkError, UserError
from becomingone.links import SCHEMES, link_class, make_link, open_link, register_scheme
from becomingone.links.serial import SerialLink
from becomingone.links.batch import DatagramBlock
from becomingone.links.udp import UdpListener
from shared import cobs


def test_registry_by_url():
    assert link_class("udp://127.0.0.1:0") is UdpListener
    for u in ("/dev/ttyACM0", "serial:/dev/ttyUSB0", "socket://localhost:7777", "loop://"):
        assert link_class(u) is SerialLink
    with pytest.raises(UserError, match="unknown link scheme 'http'"):
        link_class("http://x")
    with pytest.raises(UserError, match="cannot tell"):
        link_class("ttyACM0")
    with pytest.raises(UserError, match="bad UDP link URL"):
        make_link("udp://nohostport")
    with pytest.raises(UserError, match="bad port"):
        make_link("udp://1.2.3.4:99999")


def test_register_custom_scheme():
    register_scheme("fakeudp", "becomingone.links.udp:UdpListener")
    try:
        assert link_class("fakeudp://127.0.0.1:0") is UdpListener
    finally:
        del SCHEMES["fakeudp"]
    with pytest.raises(ValueError):
        register_scheme("x", "nocolon")


def test_udp_batch_drain_and_reply():
    link = open_link("udp://127.0.0.1:0")
    try:
        host, port = link.local_url[6:].rsplit(":", 1)
        dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dev.bind(("127.0.0.1", 0))
        for i in range(500):
            dev.sendto(b"frame%03d" % i, (host, int(port)))
        dev.sendto(b"x" * 600, (host, int(port)))        # oversize: dropped and counted
        got = []
        deadline = time.time() + 2
        while len(got) < 500 and time.time() < deadline:
            got += link.recv(0.1)
        assert [g[0] for g in got] == [b"frame%03d" % i for i in range(500)]
        assert got[0][1] == dev.getsockname()
        assert link.recv(0.05) == []
        assert link.counters["oversize"] == 1 and link.counters["frames_in"] == 500
        assert link.send(b"ack", got[0][1])
        assert dev.recv(100) == b"ack"
        with pytest.raises(LinkError, match="needs the device's address"):
            link.send(b"ack", None)                    # no address: refused, counted
        assert link.counters["send_failures"] == 1
    finally:
        link.close()
        dev.close()


def test_udp_port_in_use_is_clear():
    a = open_link("udp://127.0.0.1:0")
    try:
        with pytest.raises(LinkError, match="cannot listen on"):
            open_link(a.local_url)
    finally:
        a.close()


def test_serial_loop_cobs_and_noise_resync():
    link = open_link("loop://")
    try:
        link.send(b"\x00hello\x00")
        link.ser.write(b"\r\x02garbage")                 # stray bytes, no delimiter yet
        link.send(b"world")
        frames = []
        deadline = time.time() + 2
        while len(frames) < 2 and time.time() < deadline:
            frames += [f for f, _ in link.recv(0.05)]
        assert frames[0] == b"\x00hello\x00"
        assert frames[-1] == b"world"
        assert link.counters["cobs"] + len(frames) >= 2
    finally:
        link.close()


def _pty():
    m, s = os.openpty()
    return m, s, os.ttyname(s)


def test_serial_unplug_and_replug(tmp_path):
    import tty
    path = str(tmp_path / "ttyBOARD")
    m, s, name = _pty()
    tty.setraw(m)
    os.symlink(name, path)
    link = SerialLink(path, reopen_min=0.02, reopen_max=0.1)
    link.open()
    try:
        os.write(m, cobs.encode(b"one"))
        got = []
        deadline = time.time() + 2
        while not got and time.time() < deadline:
            got = link.recv(0.05)
        assert got == [(b"one", None)]
        # unplug: the device end disappears
        os.close(m)
        os.close(s)
        deadline = time.time() + 2
        while link.is_open and time.time() < deadline:
            link.recv(0.05)
        assert not link.is_open and link.counters["disconnects"] == 1
        os.unlink(path)
        for _ in range(5):
            assert link.recv(0.02) == []                 # port gone: retries with backoff
        assert link.counters["open_failures"] >= 1
        with pytest.raises(LinkClosed, match="reopening"):
            link.send(b"lost")
        # plug back (a new pty under the same path)
        m2, s2, name2 = _pty()
        tty.setraw(m2)
        os.symlink(name2, path)
        deadline = time.time() + 3
        got = []
        while time.time() < deadline and not got:
            if link.is_open:
                os.write(m2, cobs.encode(b"two"))
            got = link.recv(0.05)
        assert got and got[0][0] == b"two"
        assert link.counters["opens"] == 2
        assert link.send(b"back")
        time.sleep(0.05)
        assert os.read(m2, 100) == cobs.encode(b"back")
        os.close(m2)
        os.close(s2)
    finally:
        link.close()


def _recv_soon(link, timeout=2.0):
    got, deadline = [], time.time() + timeout
    while not got and time.time() < deadline:
        got = link.recv(0.05)
    return got


def test_serial_open_mid_frame_drops_the_tail_as_resync_not_a_rejection():
    """Opening a port discards what the OS buffered (pyserial), so a host that opens a running
    board's port starts mid-frame: the bytes before the first delimiter are the tail of an
    earlier frame, dropped and counted as "resync", not as a COBS error (the coordinator's
    rejections). Every whole frame starts with its own delimiter: none is lost, on the first
    open or after a replug."""
    import tty
    m, s, name = _pty()
    tty.setraw(m)
    link = SerialLink(name)
    link.open()
    try:
        whole = cobs.encode(bytes(range(1, 40)) + b"\x00tail")
        os.write(m, whole[len(whole) // 2:] + cobs.encode(b"next"))
        assert _recv_soon(link) == [(b"next", None)]
        assert link.counters["resync"] == 1 and link.counters["cobs"] == 0, link.counters
        # later garbage (not at an open) is a framing error again
        os.write(m, b"\x00\x05ab\x00" + cobs.encode(b"more"))
        assert _recv_soon(link) == [(b"more", None)]
        assert link.counters["cobs"] == 1 and link.counters["resync"] == 1, link.counters
    finally:
        link.close()
        os.close(m)
        os.close(s)


def test_serial_missing_port_first_open_raises():
    with pytest.raises(LinkError):
        open_link("/dev/does-not-exist-becomingone")


def test_udp_block_mode_recvmmsg():
    link = open_link("udp://127.0.0.1:0")
    if not link.recvmmsg:
        link.close()
        pytest.skip("recvmmsg not available")
    try:
        host, port = link.local_url[6:].rsplit(":", 1)
        dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dev.bind(("127.0.0.1", 0))
        sent = [b"f%04d" % i + b"x" * (i % 7) for i in range(300)]
        for d in sent:
            dev.sendto(d, (host, int(port)))
        dev.sendto(b"y" * 400, (host, int(port)))          # oversize
        got = []
        deadline = time.time() + 2
        while len(got) < 300 and time.time() < deadline:
            blk = link.recv_batch(0.1)
            if blk is not None:
                assert isinstance(blk, DatagramBlock)
                got += blk.items()
        assert [g[0] for g in got] == sent
        assert got[0][1] == dev.getsockname()
        assert link.counters["oversize"] == 1 and link.counters["frames_in"] == 300
        assert link.recv_batch(0.02) is None
    finally:
        link.close()
        dev.close()
