"""The NATS device link and `becomingone relay --to nats://...` (issue 16: a relay forwards to a
remote coordinator "over UDP or NATS"), against a real nats-server on 127.0.0.1 (Debian package
nats-server; .ci/run installs it).

- The link (`becomingone run --link nats://HOST:PORT/PREFIX`): a frame published on
  PREFIX.up.<sender>.<channel> is handed on with reply address "<sender>.<channel>", a reply goes
  out on PREFIX.down.<sender>.<channel>; oversize messages are dropped and counted; a bad URL and
  a server that is not there are clear errors.
- End to end, real processes: a relay with a UDP link for the LAN and `--to` a NATS URL, started
  while the server is down (it says so and waits), then the server and a coordinator on that
  NATS link, and a keyed device on the relay's UDP link. The session handshake
  completes through relay and server (neither holds a key), TELEMETRY is accepted and WITNESS
  records are ACKed. Then the NATS server dies: the relay sees the uplink lost and buffers the
  device's WITNESS records; the server comes back on the same port and every record is
  replayed, acknowledged and in the ledger, none twice.
"""
import json
import os
import socket
import subprocess
import time

import pytest

from becomingone.bench.nats_server import SERVER
from becomingone.errors import LinkError, UserError
from becomingone.ingest.keystore import Keystore
from becomingone.links import open_link
from becomingone.links.natsio import NatsIO
from shared import protocol as P
from tests.test_coordinator import FakeDevice, tel
from tests.test_relay_e2e import _cli, _start, _status, _stop, _wait

pytestmark = pytest.mark.skipif(SERVER is None, reason="nats-server is not installed")

WIT = {"witness_id": 0, "kind": P.WITNESS_DECISION, "beat": 7, "decision": 1, "threat": 40000,
       "coherence": 30000, "value": 5, "pow_bits": 0, "nonce": 0}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """nats-server (core NATS) on a fixed port of 127.0.0.1, stopped and started again by PID."""

    def __init__(self, port):
        self.port = port
        self.url = "nats://127.0.0.1:%d" % port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([SERVER, "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 10
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not start on port %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_nats_link_hands_on_frames_and_answers_on_the_down_subject():
    srv = Server(_free_port()).start()
    link = peer = None
    try:
        link = open_link(srv.url + "/bo.t")
        peer = NatsIO(srv.url, name="peer").start()
        got = []
        peer.subscribe("bo.t.down.r1.7", lambda subject, data: got.append((subject, data)))
        frame = P.encode(P.TELEMETRY, tel(1), 5, 77, 1)
        peer.publish("bo.t.up.r1.7", b"\x00" * 300)      # over the 254-byte frame limit
        peer.publish("bo.t.up.r1.7", frame)
        items, end = [], time.time() + 5
        while not items and time.time() < end:
            items = link.recv(0.2)
        assert items == [(frame, "r1.7")]
        assert link.counters["oversize"] == 1 and link.counters["frames_in"] == 1
        assert link.send(b"reply", "r1.7")
        end = time.time() + 5
        while not got and time.time() < end:
            time.sleep(0.02)
        assert got == [("bo.t.down.r1.7", b"reply")]
        with pytest.raises(LinkError, match="reply address"):
            link.send(b"x", None)
    finally:
        if peer is not None:
            peer.close()
        if link is not None:
            link.close()
        srv.stop()
    with pytest.raises(UserError, match="nats://HOST:PORT"):
        open_link("nats://127.0.0.1/bo")
    with pytest.raises(UserError, match="subject prefix"):
        open_link("nats://127.0.0.1:4222/bo.*")
    with pytest.raises(LinkError, match="cannot connect"):
        open_link(srv.url)                               # the server is gone


def test_relay_over_nats_end_to_end_through_a_lost_server(tmp_path):
    srv = Server(_free_port())
    data = str(tmp_path / "cell")
    os.makedirs(data)
    key = Keystore(os.path.join(data, "keys.json")).add(41)
    url = srv.url + "/bo.e2e"
    status_file = str(tmp_path / "relay-status.json")
    procs = []
    try:
        # the relay starts before the server: an uplink lost from the start, not an error
        relay, rinfo = _start(["relay", "--link", "udp://127.0.0.1:0", "--to", url,
                               "--ack-timeout", "1", "--probe", "0.3", "--status-file",
                               status_file, "--status-every", "0", "--json"])
        procs.append(relay)
        _wait(lambda: (lambda s: s and not s["uplink"]["up"]
                       and "not connected to the NATS server" in s["uplink"]["reason"])(
                  _status(status_file)), 10, "the relay saying the server is not there",
              lambda: _status(status_file))
        srv.start()
        coord, _info = _start(["run", "--data", data, "--link", url, "--quiet",
                               "--set", "security.intrinsic=false",
                               "--set", "admission.unknown_devices=reject"])
        procs.append(coord)
        rhost, rport = rinfo["links"][0][len("udp://"):].rsplit(":", 1)
        dev = FakeDevice((rhost, int(rport)), device_id=41, boot_id=9, key=key)
        dev.handshake()                                  # HELLO, CHALLENGE, proof: via relay + NATS
        for b in range(1, 6):
            dev.send(P.TELEMETRY, tel(b))
        dev.send(P.WITNESS, dict(WIT, witness_id=1))
        assert dev.recv(P.ACK).fields == {"acked_type": P.WITNESS, "status": P.ACK_OK, "ref": 1}

        # the server dies: the device's records are buffered by the relay
        srv.stop()
        for w in (2, 3, 4):
            dev.send(P.WITNESS, dict(WIT, witness_id=w, beat=7 + w))
            dev.send(P.TELEMETRY, tel(5 + w))
            time.sleep(0.2)
        _wait(lambda: (lambda s: s and not s["uplink"]["up"]
                       and s["buffer"]["buffered"].get("WITNESS", 0) >= 1)(_status(status_file)),
              20, "the relay marking the uplink lost and buffering", lambda: _status(status_file))
        # back on the same port: nats-py reconnects both clients, the relay replays
        srv.start()
        acked, end = set(), time.time() + 40
        dev.sock.settimeout(0.5)
        while acked != {2, 3, 4} and time.time() < end:
            try:
                raw = dev.sock.recv(512)
            except socket.timeout:
                continue
            f = P.decode(raw, auth=dev.auth)
            if f.type == P.ACK and f.fields["acked_type"] == P.WITNESS:
                assert f.fields["status"] == P.ACK_OK, f.fields
                acked.add(f.fields["ref"])
        assert acked == {2, 3, 4}, (acked, _status(status_file))
        _wait(lambda: (lambda s: s and s["uplink"]["up"] and s["buffer"]["frames"] == 0
                       and s["counters"]["uplink_lost"] >= 1
                       and s["counters"]["uplink_restored"] >= 1)(_status(status_file)),
              10, "the relay's buffer replayed", lambda: _status(status_file))
        rows = {r["device_id"]: r for r in json.loads(_cli("device", "list", "--data", data,
                                                              "--json"))}
        assert rows[41]["frames"] >= 8, rows
        assert _stop(relay) == 0
        assert _stop(coord) == 0
    finally:
        for p in procs:
            _stop(p)
        srv.stop()
    from becomingone.ledger import Ledger
    with Ledger(os.path.join(data, "ledger.sqlite")) as led:
        assert led.verify().ok
        wids = [e.data["witness_id"] for e in led.entries()
                if e.data.get("kind") == "witness" and e.data.get("device") == 41]
    assert sorted(wids) == [1, 2, 3, 4], wids

