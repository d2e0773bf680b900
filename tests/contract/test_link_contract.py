"""One contract for every link backend (python-can's back2back pattern): each backend is opened
with a peer that plays the device, and must hand on what the peer sends, send back, count, drop
oversize frames, raise LinkClosed once closed, and say where it listens. Backends: udp (with
recvmmsg where the platform has it, and without), a pty serial port, pyserial's loop://, NATS
(a real nats-server on 127.0.0.1, when installed)."""
import os
import pty
import queue
import socket
import threading
import time
import tty

import pytest

from becomingone.errors import LinkClosed, LinkError
from becomingone.links import open_link
from becomingone.links.batch import FrameBatch
from shared import cobs


class UdpPeer:
    datagram = True

    def __init__(self, recvmmsg):
        self.link = open_link("udp://127.0.0.1:0", block=recvmmsg)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2)
        host, port = self.link.local_url[6:].rsplit(":", 1)
        self.dest = (host, int(port))
        self.addr = self.sock.getsockname()

    def send(self, frame):
        self.sock.sendto(frame, self.dest)

    def recv(self):
        return self.sock.recv(4096)

    def close(self):
        self.sock.close()


class PtyPeer:
    datagram = False

    def __init__(self):
        self.master, slave = pty.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.slave_fd = slave
        self.link = open_link(os.ttyname(slave))
        self.addr = None

    def send(self, frame):
        os.write(self.master, cobs.encode(frame))

    def recv(self):
        buf, d = b"", cobs.Deframer(cobs.MAX_FRAME)
        end = time.time() + 2
        while time.time() < end:
            buf = os.read(self.master, 4096)
            got = d.feed(buf)
            if got:
                return got[0]
        raise AssertionError("nothing from the link")

    def close(self):
        os.close(self.master)
        os.close(self.slave_fd)


class LoopPeer:
    """pyserial's loop://: what the link sends comes back to it (the peer is the link itself)."""
    datagram = False

    def __init__(self):
        self.link = open_link("loop://")
        self.addr = None

    def send(self, frame):
        self.link.send(frame)

    def recv(self):
        return None                   # echoed into the link's own receive path

    def close(self):
        pass


class NatsPeer:
    """A sender on a real nats-server: publishes on the link's up subject as channel "p.1" of
    sender "p" and reads the link's answers on the matching down subject."""
    datagram = True

    def __init__(self, url):
        from becomingone.links.natsio import NatsIO
        self.link = open_link(url + "/bo.contract")
        self.io = NatsIO(url, name="contract-peer").start()
        self._got = queue.SimpleQueue()
        self.io.subscribe("bo.contract.down.p.1", lambda _s, d: self._got.put(d))
        self.addr = "p.1"

    def send(self, frame):
        self.io.publish("bo.contract.up.p.1", frame)

    def recv(self):
        return self._got.get(timeout=2)

    def close(self):
        self.io.close()


PEERS = {"udp-recvmmsg": lambda _r: UdpPeer(None), "udp-recvfrom": lambda _r: UdpPeer(False),
         "pty-serial": lambda _r: PtyPeer(), "loop": lambda _r: LoopPeer(),
         "nats": lambda r: NatsPeer(r.getfixturevalue("nats_url"))}


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory):
    from becomingone.bench.nats_server import SERVER, nats_server
    if SERVER is None:
        pytest.skip("nats-server is not installed")
    with nats_server(str(tmp_path_factory.mktemp("nats"))) as url:
        yield url


@pytest.fixture(params=sorted(PEERS))
def peer(request):
    p = PEERS[request.param](request)
    yield p
    p.link.close()
    p.close()


def drain(link, want, timeout=2.0):
    got, end = [], time.time() + timeout
    while len(got) < want and time.time() < end:
        batch = link.recv_batch(0.05)
        if batch is not None:
            assert isinstance(batch, FrameBatch) and len(batch) > 0
            got += batch.items()
    return got


def test_frames_arrive_in_order_with_a_reply_address(peer):
    frames = [b"frame-%03d" % i for i in range(50)]
    for f in frames:
        peer.send(f)
    got = drain(peer.link, len(frames))
    assert [f for f, _ in got] == frames
    assert all(a == peer.addr for _, a in got)
    c = peer.link.counters
    assert c["frames_in"] == len(frames) and c["bytes_in"] >= sum(map(len, frames))


def test_nothing_arrived_is_none(peer):
    assert peer.link.recv_batch(0.02) is None
    assert peer.link.recv(0.02) == []


def test_send_reaches_the_peer_and_is_counted(peer):
    if peer.datagram:
        peer.send(b"hello")
        (_f, addr), = drain(peer.link, 1)
        assert peer.link.send(b"reply", addr) is True
        assert peer.recv() == b"reply"
    else:
        assert peer.link.send(b"reply") is True
        echoed = peer.recv()
        if echoed is None:                               # loop://: it comes back to the link
            assert [f for f, _ in drain(peer.link, 1)] == [b"reply"]
        else:
            assert echoed == b"reply"
    assert peer.link.counters["frames_out"] == 1


def test_oversize_frames_are_dropped_and_counted(peer):
    big = b"x" * (peer.link.max_frame + 1)
    peer.send(big)
    peer.send(b"small")
    assert [f for f, _ in drain(peer.link, 1)] == [b"small"]
    assert peer.link.counters["oversize"] == 1


def test_closed_link_raises_link_closed(peer):
    peer.link.close()
    with pytest.raises(LinkClosed):
        peer.link.recv_batch(0.01)
    with pytest.raises(LinkClosed):
        peer.link.send(b"late", peer.addr)
    assert issubclass(LinkClosed, LinkError)
    assert peer.link.counters["send_failures"] == 1


def test_close_from_another_thread_ends_a_read_with_link_closed(peer):
    # a service stops by closing its links while their reader threads are inside recv_batch():
    # each reader must end with LinkClosed (pyserial's read of a port closed meanwhile raised
    # TypeError in 58 of 60 tries, a traceback at every relay shutdown)
    errors = []

    def reader():
        try:
            while True:
                peer.link.recv_batch(0.2)
        except Exception as e:               # noqa: BLE001 (what it raises is what is tested)
            errors.append(e)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.05)
    peer.link.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1 and isinstance(errors[0], LinkClosed), errors


def test_stats_name_the_link(peer):
    st = peer.link.stats()
    assert st["open"] is True and st["url"] == peer.link.local_url
    assert not st["url"].endswith(":0")                 # the real port of udp://...:0
