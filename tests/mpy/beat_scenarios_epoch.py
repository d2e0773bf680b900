# Epoch-roll and n_samples beat scenarios (bodies of tests in tests/mpy/test_beat.py), kept out of
# beat_scenarios.py so the other scenarios do not compile them into their 192K heap:
#   micropython -X heapsize=256K tests/mpy/beat_scenarios_epoch.py ROOT NAME   -> exit status 0 = pass
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

from device.clock import MASK
from tests.mpy.beat_helpers import make_beat, host_frame, FakeLink, SlowMiner, P

MPY = sys.implementation.name == "micropython"

def _verify_witness(f):
    from shared.pow import verify
    rec = P.witness_record(f.device_id, f.boot_id, f.fields)
    return verify(rec, f.fields["nonce"], f.fields["pow_bits"])


def sc_epoch_roll_before_era_256():
    # time_era is a u8: device time is injected 20 ms before era 255 (the clock is virtual);
    # the beat crosses into era 255 and the device starts a new epoch: HELLO under a new boot
    # id with seq 0, device time and beat from 0; the unacked BOOT witness is re-stamped
    b, clk, link = make_beat(["--pow-bits", "4"], start=MASK - 300000, cost_us=2)
    link.keep_telemetry = True
    b.run(3)
    assert b.enc.boot_id == 77
    b.time.era = 254
    b.time.off = MASK - 20000
    link.clear()
    b.run(12)                       # ~50 ms: era 255 reached after ~5 beats
    fr = link.frames()
    boots = [f.boot_id for f in fr]
    assert 77 in boots and boots[-1] != 77, boots
    new = boots[-1]
    assert boots == [77] * boots.index(new) + [new] * (len(boots) - boots.index(new)), boots
    old = [f for f in fr if f.boot_id == 77]
    assert max(f.time_era for f in old) == 255 and min(f.time_era for f in old) == 254
    after = [f for f in fr if f.boot_id == new]
    assert after[0].type == P.HELLO and after[0].seq == 0 and after[0].time_era == 0
    assert [f.seq for f in after] == list(range(len(after)))
    tel = [f for f in after if f.type == P.TELEMETRY]
    assert tel and tel[0].fields["beat"] == 0 and all(f.time_era == 0 for f in after)
    assert b.enc.boot_id == new and not b.enc.needs_new_boot and b.time.era == 0
    # the BOOT witness (sent, not acked, under boot 77) comes again, mined for the new boot
    w = [f for f in after if f.type == P.WITNESS]
    fr = old = after = tel = None
    link.keep_telemetry = False
    link.clear()
    gc.collect()
    for _ in range(60):
        if w or any(d[1] == P.WITNESS for d in link.sent):
            break
        b.run(1)
    w = w or [f for f in link.frames(P.WITNESS) if f.boot_id == new]
    assert w and w[0].fields["kind"] == P.WITNESS_BOOT and _verify_witness(w[0])


def sc_epoch_roll_before_seq_2_30():
    from shared.frame_encoder import SEQ_ROLL
    b, clk, link = make_beat(["--pow-bits", "0", "--batch", "3"])
    link.keep_telemetry = True
    b.run(4)
    b.enc.seq = SEQ_ROLL - 1
    link.clear()
    b.run(4)
    fr = link.frames()
    hello = [f for f in fr if f.type == P.HELLO]
    assert len(hello) == 1 and hello[0].boot_id != 77 and hello[0].seq == 0
    # the beats batched before the roll went out under the old boot id, none lost
    old = [f for f in fr if f.boot_id == 77 and f.type == P.TELEMETRY]
    assert old and old[-1].seq >= SEQ_ROLL - 1
    assert b.enc.boot_id == hello[0].boot_id


def sc_telemetry_every_n_keeps_n_samples_in_a_byte():
    # n_samples is a u8: summing 255 beats (~268 KAIROS samples at 250 Hz) the device sends a
    # record early, before its count could pass 255; the partials and counts stay exact
    b, clk, link = make_beat(["--pow-bits", "0", "--telemetry-every", "255"])
    link.keep_telemetry = True
    b.run(800)
    recs = [f.fields for f in link.frames(P.TELEMETRY)]
    assert len(recs) >= 3, len(recs)
    assert all(r["n_samples"] <= 255 for r in recs)
    assert max(r["n_samples"] for r in recs) > 240
    pending = b.acc[4]                  # device/beat.py _A_N: the record being summed
    assert sum(r["n_samples"] for r in recs) + pending == b.hw.sampler.taken // b.m.decim


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
