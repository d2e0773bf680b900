import os
import socket
import time

import pytest

from becomingone.emulate.faults import parse_faults
from becomingone.emulate.proxy import SerialFaultProxy, UdpFaultProxy
from becomingone.errors import UserError


def test_parse_faults_full_spec():
    fs = parse_faults("loss=0.05,dup=0.01,reorder=0.02,biterr=1e-4,reboot=2@10,flood=3,forge=1,fault=2@5,seed=9")
    assert fs.loss == 0.05 and fs.dup == 0.01 and fs.reorder == 0.02 and fs.biterr == 1e-4
    assert fs.reboot == [(2, 10.0)] and fs.fault == [(2, 5.0)]
    assert fs.flood == [3] and fs.forge == [1] and fs.seed == 9
    assert fs.link_faults
    assert not parse_faults("").link_faults


@pytest.mark.parametrize("spec,needle", [
    ("loss=2", "probability"),
    ("loss=x", "not a number"),
    ("bogus=1", "allowed"),
    ("reboot=2", "DEVICE@SECONDS"),
    ("flood=0", "start at 1"),
    ("loss", "name=value"),
])
def test_parse_faults_rejects_bad_items(spec, needle):
    with pytest.raises(UserError) as e:
        parse_faults(spec)
    assert needle in str(e.value)


def _udp_pair():
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    host.settimeout(1.0)
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    dev.settimeout(1.0)
    return host, dev


def test_udp_proxy_relays_both_ways_without_faults():
    host, dev = _udp_pair()
    p = UdpFaultProxy(host.getsockname()).start()
    try:
        for i in range(20):
            dev.sendto(b"up%d" % i, p.device_addr)
        got = [host.recvfrom(100) for _ in range(20)]
        assert [g[0] for g in got] == [b"up%d" % i for i in range(20)]
        host.sendto(b"down", got[0][1])
        assert dev.recvfrom(100)[0] == b"down"
        assert p.stats()["up"]["forwarded"] == 20
    finally:
        p.stop()
        host.close()
        dev.close()


class _F:
    loss = 0.3
    dup = 0.2
    reorder = 0.2


def test_udp_proxy_faults_lose_duplicate_and_reorder():
    host, dev = _udp_pair()
    host.settimeout(0.3)
    p = UdpFaultProxy(host.getsockname(), faults=_F(), seed=3).start()
    try:
        n = 300
        for i in range(n):
            dev.sendto(i.to_bytes(2, "big"), p.device_addr)
            time.sleep(0.0005)
        got = []
        try:
            while True:
                got.append(int.from_bytes(host.recvfrom(10)[0], "big"))
        except socket.timeout:
            pass
        st = p.stats()["up"]
        assert st["dropped"] > 0 and st["duplicated"] > 0 and st["reordered"] > 0
        assert len(got) == st["forwarded"]
        assert len(set(got)) < n                      # some lost
        assert len(got) > len(set(got))               # some duplicated
        assert any(b < a for a, b in zip(got, got[1:]))  # some out of order
    finally:
        p.stop()
        host.close()
        dev.close()


def _read_exactly(fd, n, timeout=2.0):
    out = b""
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            out += os.read(fd, n - len(out))
        except BlockingIOError:
            time.sleep(0.01)
    return out


def test_serial_proxy_copies_and_flips_bits():
    clean = SerialFaultProxy().start()
    noisy = SerialFaultProxy(biterr=0.5, seed=2).start()
    try:
        for proxy, expect_same in ((clean, True), (noisy, False)):
            dev = os.open(proxy.device_path, os.O_RDWR | os.O_NOCTTY)
            host = os.open(proxy.host_path, os.O_RDWR | os.O_NOCTTY)
            os.set_blocking(host, False)
            os.set_blocking(dev, False)
            msg = bytes(range(1, 200))
            os.write(dev, msg)
            got = _read_exactly(host, len(msg))
            assert len(got) == len(msg)
            assert (got == msg) is expect_same
            os.write(host, b"\x00reply\x00")
            assert len(_read_exactly(dev, 7)) == 7
            os.close(dev)
            os.close(host)
        assert noisy.stats()["bits_flipped"] > 0 and clean.stats()["bits_flipped"] == 0
    finally:
        clean.stop()
        noisy.stop()
