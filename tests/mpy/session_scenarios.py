# The session handshake on the device (device/session.py, device/hostframes.py; docs/PROTOCOL.md
# 4.1) and its key derivation (shared/hkdf.py) against the golden vectors, on both runtimes.
# The host's half is played here with shared.protocol and shared.hkdf (the host's own code is
# CPython-only and tested in tests/test_handshake.py).
# Bodies of tests/mpy/test_session.py; under MicroPython each runs in its own process with a
# fresh 192K heap:
#   micropython -X heapsize=192K tests/mpy/session_scenarios.py ROOT NAME  -> exit status 0 = pass
import sys
if __name__ == "__main__":
    _root = sys.argv[1]
    for _p in (_root + "/tests/fakes", _root):
        sys.path.insert(0, _p)

import binascii
import json

from shared import protocol as P
from shared.auth import Auth
from shared.wire_errors import ProtocolError

KEY = bytes(range(0xA0, 0xC0))
DEV = 17
BOOT = 0x2A5C


def _load():
    here = __file__
    i = here.rfind("/")
    d = here[:i] if i >= 0 else "."
    with open(d + "/../vectors/protocol_vectors.json") as f:
        return json.load(f)


def _unhex(s):
    return binascii.unhexlify(s)


def sc_hkdf_rfc5869_and_session_vectors():
    from shared import hkdf as H
    V = _load()
    for c in V["hkdf_rfc5869"]:
        out = H.hkdf_sha256(_unhex(c["salt"]), _unhex(c["ikm"]), _unhex(c["info"]), c["length"])
        assert binascii.hexlify(out).decode() == c["okm"]
    s = V["session"]
    sk = H.session_key(_unhex(s["key_hex"]), _unhex(s["host_nonce"]), _unhex(s["device_nonce"]),
                       s["device_id"], s["boot_id"])
    assert binascii.hexlify(sk).decode() == s["session_key"]
    assert binascii.hexlify(H.session_info(s["device_id"], s["boot_id"])).decode() == s["info_hex"]
    a = Auth(sk)
    ch = P.decode(_unhex(s["challenge_hex"]), auth=a)
    assert ch.type == P.CHALLENGE and ch.fields["nonce"] == _unhex(s["host_nonce"])
    ack = P.decode(_unhex(s["ack_hex"]), auth=a)
    assert ack.fields == {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": ch.seq}
    try:                              # the device key does not verify a session frame
        P.decode(_unhex(s["ack_hex"]), auth=Auth(KEY))
        raise AssertionError("a session frame verified with the device key")
    except ProtocolError as e:
        assert e.reason == "auth"


class _Link:
    name = "fake"
    cobs = False

    def __init__(self):
        self.sent = []
        self.inbox = []
        self.tx_frames = self.rx_frames = self.send_errors = self.rx_dropped = 0

    def send(self, data):
        self.sent.append(bytes(data))

    def recv(self):
        return self.inbox.pop(0) if self.inbox else None


class _Time:
    def __init__(self):
        self.era = 0
        self.off = 1000
        self.reads = 0

    def update(self):
        self.off += 250
        self.reads += 1


class _Settings:
    link_timeout_ms = 3000
    pow_bits = 0


class _Beat:
    """What device/hostframes.py and device/session.py use of device/beat.py's Beat; its
    send_hello mirrors Beat.send_hello's key choice (the firmware's runs in the emulation
    tests)."""

    def __init__(self, key=KEY):
        from device.hostframes import HostFrames
        from device.session import Handshake
        from device.witness_queue import WitnessQueue
        from shared.frame_encoder import Encoder
        self.enc = Encoder(DEV, BOOT, Auth(key))
        self.link = _Link()
        self.time = _Time()
        self.now_ms = 0
        self.link_up = True
        self.last_rx_ms = 0
        self.s = _Settings()
        self.queue = WitnessQueue(capacity=4, rec_max=24)
        self.host = HostFrames(self, Auth(key))
        self.host.hs = Handshake(key)
        self.quarantined = True

    def send_hello(self):
        enc = self.enc
        a = enc.auth
        hs = self.host.hs
        enc.auth = hs.hello_auth(self) or a
        self.link.send(enc.hello(self.time.era, self.time.off, b"test", 0, 3, 0, 0, 1000, 4211,
                                 0, 10, 12, 0, 0, 1, 32, 500, 0, 1, 4, 0, hs.nonce))
        enc.auth = a

    def witness(self, kind, decision, value):
        return -1


def _sent(b, t):
    return [d for d in b.link.sent if d[1] == t]


def _challenge(b, host_nonce, seq, key=KEY, nonce=None):
    from shared.hkdf import session_key
    sk = session_key(key, host_nonce, nonce or b.host.hs.nonce, DEV, BOOT)
    return P.encode(P.CHALLENGE, {"nonce": host_nonce}, 0, BOOT, seq, auth=Auth(sk)), Auth(sk)


def sc_handshake_establishes_a_session_key():
    b = _Beat()
    hs = b.host.hs
    assert hs.pending
    b.send_hello()
    hello = P.decode(_sent(b, P.HELLO)[-1], auth=Auth(KEY))      # tagged with the device key
    assert hello.fields["nonce"] == hs.nonce and len(hs.nonce) == 16
    # a CHALLENGE with another key (a forger, or one for an older nonce) is ignored
    bad, _ = _challenge(b, b"H" * 16, 100, key=bytes(32))
    b.host.handle(bad)
    assert hs.pending and b.host.rx_auth == 1 and not _sent(b, P.ACK)
    ch, sk = _challenge(b, b"N" * 16, 101)
    b.host.handle(ch)
    assert not hs.pending and hs.sessions == 1
    acks = _sent(b, P.ACK)
    f = P.decode(acks[-1], auth=sk)                # the proof: the first frame under SK
    assert f.fields == {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": 101}
    assert b.enc.auth is b.host.auth and b.enc.auth is not None
    # the same CHALLENGE again (a replay) changes nothing
    b.host.handle(ch)
    assert hs.sessions == 1 and len(_sent(b, P.ACK)) == 1
    # host frames now carry SK; one under the device key is refused as such...
    req = P.encode(P.TIME_SYNC, {"mode": P.SYNC_REQUEST, "host_t1_us": 5, "rx_era": 0,
                                 "rx_off": 0}, 0, BOOT, 102, auth=sk)
    b.host.handle(req)
    rep = P.decode(_sent(b, P.TIME_SYNC)[-1], auth=sk)
    assert rep.fields["mode"] == P.SYNC_REPLY and b.host.time_syncs == 1


def sc_device_key_frame_starts_a_new_handshake_once():
    b = _Beat()
    hs = b.host.hs
    ch, sk = _challenge(b, b"N" * 16, 10)
    b.host.handle(ch)
    first = hs.nonce
    b.link.sent = []
    b.now_ms = 5000
    # the host restarted: its request for a HELLO is tagged with the device key K
    req = P.encode(P.TIME_SYNC, {"mode": P.SYNC_REQUEST, "host_t1_us": 0, "rx_era": 0,
                                 "rx_off": 0}, 0, BOOT + 1, 20, auth=Auth(KEY))
    b.host.handle(req)
    assert hs.pending and hs.nonce != first
    h = P.decode(_sent(b, P.HELLO)[-1], auth=Auth(KEY))
    assert h.fields["nonce"] == hs.nonce
    assert b.enc.auth is b.host.auth          # SK stays until the new handshake completes
    b.host.handle(req)                        # a replay of that request: counted, no HELLO
    assert b.host.rx_replay == 1 and len(_sent(b, P.HELLO)) == 1
    ch2, sk2 = _challenge(b, b"M" * 16, 30)
    b.host.handle(ch2)
    assert not hs.pending and hs.sessions == 2
    P.decode(_sent(b, P.ACK)[-1], auth=sk2)


def sc_pending_hello_resent_each_second():
    b = _Beat()
    hs = b.host.hs
    b.send_hello()
    n = len(_sent(b, P.HELLO))
    b.now_ms = 500
    b.host.poll()
    assert len(_sent(b, P.HELLO)) == n
    b.now_ms = 1100
    b.host.poll()
    assert len(_sent(b, P.HELLO)) == n + 1
    assert hs.pending


def sc_time_sync_receive_time_taken_when_the_frame_is_read():
    b = _Beat()
    ch, sk = _challenge(b, b"N" * 16, 10)
    b.host.handle(ch)
    reads = b.time.reads
    req = P.encode(P.TIME_SYNC, {"mode": P.SYNC_REQUEST, "host_t1_us": 5, "rx_era": 0,
                                 "rx_off": 0}, 0, BOOT, 11, auth=sk)
    b.host.handle(req)
    rep = P.decode(_sent(b, P.TIME_SYNC)[-1], auth=sk)
    assert b.time.reads >= reads + 2       # read at receipt, and again for the reply
    assert rep.fields["rx_off"] > 1000 and rep.fields["rx_off"] <= rep.time_off


def sc_rejected_witness_is_kept_and_restamped():
    from device import witness_queue as W
    b = _Beat()
    ch, sk = _challenge(b, b"N" * 16, 10)
    b.host.handle(ch)
    q = b.queue
    slot = q.alloc(True)                  # a QUARANTINE record
    rec = q.rec[slot]
    for i in range(23):
        rec[i] = i
    rec[22] = 8                           # minted at pow_bits 8
    q.commit(slot, 23)
    q.mined(slot, 7)
    q.sent(slot, 0)
    rid = q.rec_id[slot]
    b.s.pow_bits = 8
    rej = P.encode(P.ACK, {"acked_type": P.WITNESS, "status": P.ACK_REJECTED, "ref": rid},
                   0, BOOT, 11, auth=sk)
    b.host.handle(rej)                    # refused at the same difficulty: resent later
    assert q.state[slot] == W.SENT and q.pending() == 1
    b.s.pow_bits = 12                     # the host raised it (CONFIG pow_bits)
    rej2 = P.encode(P.ACK, {"acked_type": P.WITNESS, "status": P.ACK_REJECTED, "ref": rid},
                    0, BOOT, 12, auth=sk)
    b.host.handle(rej2)
    assert q.state[slot] == W.MINING and rec[22] == 12 and q.pending() == 1
    assert q.quar[slot] == 1
    ok = P.encode(P.ACK, {"acked_type": P.WITNESS, "status": P.ACK_OK, "ref": rid},
                  0, BOOT, 13, auth=sk)
    q.mined(slot, 3)
    q.sent(slot, 0)
    b.host.handle(ok)
    assert q.pending() == 0


if __name__ == "__main__":
    try:
        globals()["sc_" + sys.argv[2]]()
    except Exception as e:
        sys.print_exception(e)
        sys.exit(1)
    sys.exit(0)
