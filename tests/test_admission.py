import os

import pytest

from becomingone.ingest.admission import FULL, OBSERVE, Admission
from becomingone.errors import UserError
from becomingone.ingest.keystore import Keystore
from shared import pow as POW
from shared import protocol as P

WIT = {"witness_id": 9, "kind": 1, "beat": 100, "decision": 3, "threat": 42000,
       "coherence": 30000, "value": -3, "pow_bits": 8, "nonce": 0}


def witness_frame(bits, device_id=17, boot_id=0x2A5C, stamp_bits=None, **over):
    f = dict(WIT, pow_bits=bits if stamp_bits is None else stamp_bits, **over)
    f["nonce"] = POW.mint(P.witness_record(device_id, boot_id, f), bits) if bits else 0
    return P.decode(P.encode(P.WITNESS, f, device_id, boot_id, 1))


def test_keystore_roundtrip_modes_and_secrecy(tmp_path):
    p = str(tmp_path / "keys.json")
    ks = Keystore(p)
    k = ks.add(5)
    assert len(k) == 32 and oct(os.stat(p).st_mode & 0o777) == "0o600"
    ks.add("6", "ab" * 32)
    with pytest.raises(UserError, match="already has a key"):
        ks.add(6)
    assert Keystore(p).get(6) == bytes.fromhex("ab" * 32)
    assert "ab" * 32 not in repr(ks) and all("ab" * 32 not in str(r) for r in ks.listing())
    assert [r["device_id"] for r in ks.listing()] == [5, 6]
    with pytest.raises(UserError, match="exactly 32 bytes") as e:
        ks.add(7, "abcd")
    assert "abcd" not in str(e.value)
    with pytest.raises(UserError, match="1..65535"):
        ks.add(0)
    os.chmod(p, 0o644)
    with pytest.raises(UserError, match="chmod 600"):
        Keystore(p)
    y = tmp_path / "keys.yaml"
    y.write_text("devices:\n  9: %s\n" % ("cd" * 32))
    os.chmod(y, 0o600)
    assert Keystore(str(y)).get(9) == bytes.fromhex("cd" * 32)
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": "zz"}')
    os.chmod(bad, 0o600)
    with pytest.raises(UserError, match="device id must be"):
        Keystore(str(bad))
    bad.write_text('{"4": "zz"}')
    with pytest.raises(UserError, match="not hex"):
        Keystore(str(bad))
    os.chmod(p, 0o600)
    ks.remove(5)
    assert 5 not in Keystore(p) and 6 in Keystore(p)


def test_unknown_device_policies(tmp_path):
    ks = Keystore(str(tmp_path / "k.json"))
    ks.add(1)
    for policy, want in (("accept", FULL), ("observe", OBSERVE), ("reject", None)):
        a = Admission(ks, policy=policy)
        assert a.level(1) == FULL
        assert a.level(2) == want
        lv, reason = a.admit(2, P.TELEMETRY, 39)
        assert lv == want and (reason == "unknown_device") == (want is None)
    with pytest.raises(ValueError, match="allowed: reject, observe, accept"):
        Admission(ks, policy="maybe")


def test_rate_limit_in_admission():
    a = Admission(policy="accept", rate_capacity=10, rate_refill=0.001)
    results = [a.admit(3, P.TELEMETRY, 39)[1] for _ in range(20)]
    assert results.count(None) == 7                  # 10 / 1.35 tokens per frame
    assert a.rejected["rate_limited"] == 13


def test_pow_required_at_host_difficulty_per_device():
    a = Admission(policy="accept", pow_bits=8)
    assert a.check_witness(witness_frame(8)) is None
    # a stamp claiming 8 bits but with a wrong nonce
    f = witness_frame(8)
    f.fields["nonce"] ^= 1
    if POW.verify(P.witness_record(17, 0x2A5C, f.fields), f.fields["nonce"], 8):
        f.fields["nonce"] ^= 3
    assert a.check_witness(f) == "pow"
    # the stamp binds the device: the same record from another device fails
    g = witness_frame(8)
    moved = P.decode(P.encode(P.WITNESS, g.fields, 18, 0x2A5C, 1))
    if not POW.verify(P.witness_record(18, 0x2A5C, g.fields), g.fields["nonce"], 8):  # p = 255/256
        assert a.check_witness(moved) == "pow"
    a.set_pow_bits(17, 12)                            # raised at run time for device 17
    assert a.check_witness(witness_frame(8)) == "pow"
    assert a.check_witness(witness_frame(12)) is None
    assert a.check_witness(witness_frame(8, device_id=18)) is None   # others unchanged
    a.set_pow_bits(17, 0)
    assert a.check_witness(witness_frame(0)) is None
    with pytest.raises(ValueError):
        a.set_pow_bits(17, 33)
    assert a.rejected["pow"] >= 2
    assert Admission(pow_required=False).check_witness(witness_frame(0)) is None
