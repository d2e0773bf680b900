# Link beat scenarios: witness resends, mining, time sync, bad host frames (bodies of tests in
# tests/mpy/test_beat.py), in their own file so the other scenarios do not compile them into
# their 192K heap:
#   micropython -X heapsize=256K tests/mpy/beat_scenarios_link.py ROOT NAME  -> exit status 0 = pass
import gc
import sys
if __name__ == "__main__":
    _root = sys.argv[1]
    for _p in (_root + "/tests/fakes", _root):
        sys.path.insert(0, _p)
    import os
    _fw = os.getenv("BECOMINGONE_FIRMWARE")
    if _fw:
        # the firmware precompiled with mpy-cross (tools/test.sh builds it), as on a board:
        # loading .mpy files needs no compiler heap, so no reserve either
        sys.path.insert(0, _fw)
        _reserve = None
    else:
        _reserve = bytearray(8 * 1024)   # one large hole for the tables (see device/main.py)

from tests.mpy.beat_helpers import make_beat, host_frame, FakeLink, SlowMiner, P

MPY = sys.implementation.name == "micropython"


def sc_witness_resent_after_link_drop_until_acked():
    b, clk, link = make_beat(["--pow-bits", "6"])
    b.s.link_timeout_ms = 200
    link.inbox.append(host_frame(b, P.TIME_SYNC, {"mode": 0, "host_t1_us": 5, "rx_era": 0,
                                                  "rx_off": 0}, seq=1))
    b.run(5)
    assert b.link_up
    wid = b.witness(P.WITNESS_DECISION, P.DECISION_ALERT, 123)
    b.run(30)
    sent = [f for f in link.frames(P.WITNESS) if f.fields["witness_id"] == wid]
    assert len(sent) == 1
    f = sent[0].fields
    from shared.pow import verify
    rec = P.witness_record(b.enc.device_id, b.enc.boot_id, f)
    assert f["pow_bits"] == 6 and verify(rec, f["nonce"], 6)
    # the link drops: no host frames for > link_timeout
    link.clear()
    b.run(60)                                     # ~250 ms
    assert not b.link_up
    n_before = len([1 for x in link.frames(P.WITNESS) if x.fields["witness_id"] == wid])
    # the host comes back: the record is resent at once (plus a HELLO)
    link.inbox.append(host_frame(b, P.TIME_SYNC, {"mode": 0, "host_t1_us": 6, "rx_era": 0,
                                                  "rx_off": 0}, seq=2))
    b.run(4)                                      # one (re)send per idle: boot record too
    assert b.link_up
    again = [x for x in link.frames(P.WITNESS) if x.fields["witness_id"] == wid]
    assert len(again) == n_before + 1, (len(again), n_before)
    assert link.frames(P.HELLO)
    # ACK: no more resends
    link.inbox.append(host_frame(b, P.ACK, {"acked_type": P.WITNESS, "status": 0, "ref": wid},
                                 seq=3))
    b.run(2)
    link.clear()
    b.run(600)                                    # 2.5 s: past any resend timeout
    assert not [x for x in link.frames(P.WITNESS) if x.fields["witness_id"] == wid]
    assert b.queue.acked >= 1


def sc_mining_never_makes_a_beat_late():
    # 20-bit stamps; every hash costs 40 us of virtual time, every clock read 2 us
    def run(bits):
        from device.clock import VirtualClock
        link = FakeLink()
        link.keep = False
        b, clk, _ = make_beat(["--pow-bits", str(bits)], link=link, cost_us=2)
        b.m.miner = SlowMiner(clk, 40)
        b.run(400)
        return b
    plain_max = run(0).lateness.max_us
    gc.collect()                                  # the first beat's heap back (192K is tight)
    mined = run(20)
    assert mined.hashes > 10000, mined.hashes     # it really mined in the idle time
    assert mined.lateness.max_us <= plain_max + 2, (mined.lateness.max_us, plain_max)
    assert mined.skipped == 0 and mined.lateness.percentile(99) <= 10


def sc_time_sync_reply_and_model():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(3)
    link.inbox.append(host_frame(b, P.TIME_SYNC, {"mode": 0, "host_t1_us": 123456789012,
                                                  "rx_era": 0, "rx_off": 0}))
    link.inbox.append(host_frame(b, P.MODEL, {"model_version": 7, "bias": -1.0, "w_level": 0.5,
                                              "w_kurt": 2.0, "w_crest": 0.0, "w_anoms": 0.25},
                                 seq=1))
    b.run(2)
    r = link.frames(P.TIME_SYNC)[-1]
    assert r.fields["mode"] == P.SYNC_REPLY and r.fields["host_t1_us"] == 123456789012
    assert r.time_off >= r.fields["rx_off"]
    m = b.m.arb.model()
    assert m == (-1.0, 0.5, 2.0, 0.0, 0.25), m
    ack = link.frames(P.ACK)[-1].fields
    assert ack["acked_type"] == P.MODEL and ack["ref"] == 7


def sc_bad_host_frames_counted_not_raised():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(2)
    good = host_frame(b, P.CLEAR, {"reason": 1, "ref": 1})
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    other_boot = P.encode(P.CLEAR, {"reason": 1, "ref": 1}, 0, b.enc.boot_id ^ 0x55, 0)
    link.inbox.extend([bytes(bad_crc), b"\x01\x02", other_boot])
    link.clear()
    b.run(3)
    h = b.host
    assert h.rx_crc == 1 and h.rx_other == 1 and h.rx_stale_boot == 1
    assert link.frames(P.HELLO)                   # the host missed our boot id: HELLO again


if __name__ == "__main__":
    from device import runner
    from device.cli import parse_args
    try:
        runner.prepare(parse_args(["--clock", "virtual"]))
    except MemoryError:
        _reserve = None
        gc.collect()
        runner.prepare(parse_args(["--clock", "virtual"]))
    import tests.mpy.beat_helpers  # noqa: F401
    _reserve = None
    gc.collect()
    fn = globals()["sc_" + sys.argv[2]]
    try:
        fn()
    except Exception as e:
        sys.print_exception(e)
        sys.exit(1)
    sys.exit(0)
