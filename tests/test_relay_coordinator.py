"""A relay in front of a real coordinator process on 127.0.0.1, with a lossy path between them."""
import select
import socket
import threading
import time

from becomingone.relay.frames import acked_witness, peek
from becomingone.relay.service import Relay
from shared import protocol as P
from tests.test_attacks import Dev, coords, tel, wait, witness  # noqa: F401 (coords: a fixture)


class Blip:
    """UDP between the relay and the coordinator (a socket toward the coordinator per relay
    socket, so each device keeps an address of its own) that loses everything coming back for
    `blip_s` from the first ACK of a WITNESS on."""

    def __init__(self, coord_addr, blip_s):
        self.coord = coord_addr
        self.blip_s = blip_s
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = {}            # relay address -> socket toward the coordinator
        self.owner = {}           # that socket's fileno -> relay address
        self.blip_from = None
        self.lost = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            socks = [self.front] + list(self.back.values())
            r, _w, _x = select.select(socks, [], [], 0.1)
            for s in r:
                data, addr = s.recvfrom(4096)
                if s is self.front:
                    b = self.back.get(addr)
                    if b is None:
                        b = self.back[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        b.bind(("127.0.0.1", 0))
                        self.owner[b.fileno()] = addr
                    b.sendto(data, self.coord)
                    continue
                now = time.monotonic()
                p = peek(data)
                if self.blip_from is None and p is not None and acked_witness(data, p) is not None:
                    self.blip_from = now
                if self.blip_from is not None and now - self.blip_from < self.blip_s:
                    self.lost += 1
                    continue
                self.front.sendto(data, self.owner[s.fileno()])

    def close(self):
        self.running = False
        self.thread.join(5)
        for s in [self.front] + list(self.back.values()):
            s.close()


def test_a_lost_witness_ack_does_not_leave_the_relay_lost(tmp_path, coords):
    # the session goes offline 1 s into the blip: from then on the coordinator sends the device
    # nothing of its own (no TIME_SYNC), so only an answer to the relay's probe can bring it back
    c = coords(tmp_path, keys=[7], sets=["devices.session_timeout_s=1"])
    blip = Blip(c.addr, blip_s=2.5)
    relay = Relay(["udp://127.0.0.1:0"], "udp://127.0.0.1:%d" % blip.port, ack_timeout=0.5, probe=0.2,
                  replay_rate=1000).start()
    runner = threading.Thread(target=relay.run, kwargs={"status_every": 0.2}, daemon=True)
    runner.start()
    host, port = relay.links[0].local_url[6:].rsplit(":", 1)
    dev = Dev((host, int(port)), 7, key=c.keys[7])
    try:
        dev.boot()                                    # the handshake, through relay and blip
        for b in range(5):
            dev.send(P.TELEMETRY, tel(b))
        # the host's first frames to a new session (its TIME_SYNC requests) are through: a frame
        # from the coordinator after the WITNESS would tell the relay the uplink is there
        time.sleep(1.5)
        dev.send(P.WITNESS, witness(1))               # committed; its ACK is lost in the blip
        assert wait(lambda: relay.counters["uplink_lost"] == 1, 5), relay.counters
        assert wait(lambda: blip.blip_from is not None and time.monotonic() - blip.blip_from > blip.blip_s, 5)
        for b in range(5, 25):                        # buffered behind the probed WITNESS
            dev.send(P.TELEMETRY, tel(b))
        assert wait(lambda: relay.is_up, 5), relay.status()
        assert wait(lambda: (c.session(7) or {}).get("by_type", {}).get(str(P.TELEMETRY)) == 25, 10), \
            c.session(7)
        st = c.status()
        assert st["witness"]["committed"] == 1 and st["witness"]["reacked"] >= 1, st["witness"]
        assert relay.counters["uplink_lost"] == 1 and relay.counters["uplink_restored"] == 1
        assert blip.lost >= 1
        acks = []                                     # and the device has its record's ACK
        dev.sock.settimeout(0.5)
        try:
            while True:
                f = dev.sock.recv(4096)
                p = peek(f)
                if p is not None and acked_witness(f, p) is not None:
                    acks.append(acked_witness(f, p))
        except socket.timeout:
            pass
        assert (dev.boot_id, 1) in acks, acks
    finally:
        relay.stop()
        runner.join(5)
        relay.close()
        blip.close()
        dev.close()
