# Fault beat scenarios (bodies of tests in tests/mpy/test_beat.py): an exception in the beat,
# QUARANTINE across a reboot, CLEAR without a bump, samples lost in HEARTBEAT, counters that
# cannot overflow.  Own file so the other scenarios do not compile them into their 192K heap:
#   micropython -X heapsize=256K tests/mpy/beat_scenarios_faults.py ROOT NAME -> exit status 0 = pass
import gc
import sys
if __name__ == "__main__":
    _root = sys.argv[1]
    for _p in (_root + "/tests/fakes", _root):
        sys.path.insert(0, _p)
    import os
    _fw = os.getenv("BECOMINGONE_FIRMWARE")
    if _fw:
        sys.path.insert(0, _fw)
        _reserve = None
    else:
        _reserve = bytearray(8 * 1024)   # one large hole for the tables (see device/main.py)

import os
from tests.mpy.beat_helpers import make_beat, host_frame, threaten, P
from device.report import report


def _state_dir():
    b = os.urandom(4)
    d = "/tmp/bo-latch-%02x%02x%02x%02x" % (b[0], b[1], b[2], b[3])
    os.mkdir(d)
    return d


def _rmtree(d):
    for n in os.listdir(d):
        os.remove(d + "/" + n)
    os.rmdir(d)


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _first(link, t):
    for d in link.sent:
        if d[1] == t:
            return P.decode(d)
    return None


def sc_exception_in_beat_safe_output_error_and_crash_latch():
    d = _state_dir()
    try:
        b, clk, link = make_beat(["--pow-bits", "0"], state_dir=d)
        b.hw.pwm.safe_duty = 1000
        b.run(30)
        assert b.hw.pwm.duty != 1000                   # the PID drives the output
        m = b.m

        def boom(*args):
            raise RuntimeError("injected fault")
        m.beat = boom                                  # the beat's maths fails
        link.clear()
        rc = b.run(5)
        assert rc == 3                                 # faults.EXIT_CRASH (no hardware WDT)
        assert b.hw.pwm.duty == 1000 and b.hw.led.state == 1   # outputs at their safe value
        err = link.frames(P.ERROR)[-1].fields
        assert err["code"] == P.ERR_INTERNAL and err["text"] == "RuntimeError: in"
        assert _exists(d + "/latch") and _exists(d + "/crash.txt")
        with open(d + "/reset-cause") as f:
            assert f.read().strip() == "crash"
        del m.beat
        # the next boot: reset cause CRASH, QUARANTINE from beat 0, until CLEAR
        b = None
        gc.collect()
        b, clk, link = make_beat(["--pow-bits", "0"], state_dir=d, boot_id=78)
        assert b.quarantined and b.latch.cause == P.RESET_CRASH
        link.keep_telemetry = True
        b.run(3)
        h = _first(link, P.HELLO).fields
        assert h["reset_cause"] == P.RESET_CRASH
        assert h["boot_flags"] == P.BOOT_LATCHED | P.BOOT_RESTORED
        t = _first(link, P.TELEMETRY).fields
        assert t["beat"] == 0 and t["decision_state"] & P.STATE_QUARANTINE_LATCHED
        assert b.hw.pwm.duty == b.hw.pwm.safe_duty
        w = [f.fields for f in link.frames(P.WITNESS)]
        assert w[0]["kind"] == P.WITNESS_BOOT and w[0]["value"] == P.RESET_CRASH
        assert any(x["kind"] == P.WITNESS_DECISION and x["decision"] == P.DECISION_QUARANTINE
                   for x in w)
        assert not _exists(d + "/reset-cause")         # consumed at boot
    finally:
        _rmtree(d)


def sc_quarantine_survives_a_reboot_until_clear():
    """The landed firmware kept QUARANTINE in RAM: a reboot at 12 s released a latch entered at
    5.6 s without CLEAR.  Now the latch file brings it back at the next boot."""
    d = _state_dir()
    try:
        b, clk, link = make_beat(["--pow-bits", "0"], state_dir=d)
        assert not b.quarantined and b.latch.cause == P.RESET_UNKNOWN
        threaten(b)                                  # threat ~ 1: QUARANTINE
        b.run(3)
        assert b.quarantined
        b.m.arb.risk_anoms = 0
        b.run(2)                                     # idle time writes the latch file
        assert _exists(d + "/latch")
        # reboot (a new process, a new boot id): latched from the first beat
        b = None
        gc.collect()
        b, clk, link = make_beat(["--pow-bits", "0"], state_dir=d, boot_id=79)
        link.keep_telemetry = True
        b.run(20)
        assert b.quarantined and b.hw.pwm.duty == b.hw.pwm.safe_duty
        t = _first(link, P.TELEMETRY).fields
        assert t["beat"] == 0 and t["decision_state"] & P.STATE_QUARANTINE_LATCHED
        st = P.decode(link.last_telemetry if link.last_telemetry else link.sent[-1]).fields
        # CLEAR releases it, and the file with it
        link.inbox.append(host_frame(b, P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 1}))
        b.run(3)
        assert not b.quarantined and not _exists(d + "/latch")
        b = None
        gc.collect()
        b, clk, link = make_beat(["--pow-bits", "0"], state_dir=d, boot_id=80)
        assert not b.quarantined
    finally:
        _rmtree(d)


def sc_clear_does_not_bump_the_output():
    """CLEAR used to reset the actuator PID (integral 0): the output jumped from the safe duty to
    wherever P alone put it.  Now it continues from the safe duty.  A pure-I actuator here, so
    the sensor noise (which P and D pass through) does not hide a jump."""
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.m.act.configure(0.0, 8.0, 0.0, b.m.pulse.period_s)
    b.hw.pwm.safe_duty = 20000
    b.run(40)
    threaten(b)
    b.run(3)
    assert b.quarantined and b.hw.pwm.duty == 20000
    b.m.arb.risk_anoms = 0
    b.run(20)
    link.inbox.append(host_frame(b, P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 1}))
    duties = []
    for _ in range(6):
        b.idle()
        b.step()
        duties.append(b.hw.pwm.duty)
    assert not b.quarantined
    # from the held 20000 the output moves by one integration step a beat at most:
    # Ki * |e| * T = 8 * 1.0 * 4.21 ms = 0.034 of full scale = 2207 counts
    assert abs(duties[0] - 20000) <= 2208, duties
    for x, y in zip(duties, duties[1:]):
        assert abs(y - x) <= 2208, duties


def sc_samples_lost_reported_in_heartbeat():
    b, clk, link = make_beat(["--pow-bits", "0"])
    b.run(300)                                        # > 1 s: heartbeats sent
    hb = link.frames(P.HEARTBEAT)
    assert hb and hb[-1].fields["samples_lost"] == 0
    # the beat stalls for 400 ms: the 256-sample ring overflows
    clk.advance(400000)
    link.clear()
    b.run(300)
    lost = b.hw.sampler.lost()
    assert lost > 100, lost
    hb = link.frames(P.HEARTBEAT)[-1].fields
    assert hb["samples_lost"] == lost
    assert report(b)["samples_lost"] == lost


def sc_counters_cannot_overflow():
    """Decision counters were array('i'): 2^31 beats (105 days at 4.2 ms) overflow them, which
    raises on CPython (the Pi Zero). Counters saturate below 2^30 now; the lateness histogram
    halves its buckets."""
    b, clk, link = make_beat(["--pow-bits", "0"])
    link.keep = False
    b.run(2)
    for i in range(5):
        b.decisions[i] = 0x3FFFFFFF - 1
    b.collapses = 0x3FFFFFFF
    from device.clock import SKIPPED
    b.tst[SKIPPED] = 0x3FFFFFFF
    lt = b.lateness
    lt.h[0] = (1 << 29) - 3
    lt.h[len(lt.h) - 2] = (1 << 29) - 3      # the words after the buckets: count, max
    b.run(10)
    assert max(b.decisions) == 0x3FFFFFFF and min(b.decisions) >= 0x3FFFFFFF - 1
    assert b.collapses == 0x3FFFFFFF and b.skipped == 0x3FFFFFFF
    assert lt.count < (1 << 29) and lt.percentile(50) >= 0
    assert report(b)["beats"] == 12
    if sys.implementation.name != "micropython":
        # where the landed code's array('i') counters end: one more raised OverflowError
        for i in range(5):
            b.decisions[i] = 0x7FFFFFFF
        b.run(3)
        assert report(b)["beats"] == 15


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
