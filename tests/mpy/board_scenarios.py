# Board scenarios (bodies of tests/mpy/test_boards.py): pico / pico_w with the fake `machine`,
# the sample ring, the rp2 latch.  Under MicroPython each runs in a fresh 192K process (every
# module a test imports leaves its names interned for good: one file for them all fragments the
# shared heap of tests/mpy_runner.py):
#   micropython -X heapsize=256K tests/mpy/board_scenarios.py ROOT NAME   -> exit status 0 = pass
import sys
if __name__ == "__main__":
    _root = sys.argv[1]
    for _p in (_root + "/tests/fakes", _root):
        sys.path.insert(0, _p)
import gc
import machine
from device.clock import VirtualClock


def sc_pico_build_and_drive_timer_sampler():
    from boards import pico
    clk = VirtualClock()
    hw = pico.build(clk, f_s=1000, safe_duty=123, machine=machine, sampler="timer")
    assert hw.name == "pico" and hw.adc_bits == 12 and hw.has_wdt
    assert hw.limits is pico.LIMITS and hw.state_dir == "/"
    adc = hw.sampler.adc
    assert adc.channel == 0                      # GP26 = ADC0
    vals = [100, 4000, 2048]
    it = [0]

    def src():
        v = vals[it[0] % 3] << 4
        it[0] += 1
        return v
    adc.source = src
    hw.sampler.start(0)
    t = hw.sampler.timer
    assert t.freq_hz == 1000 and t.running
    assert t.hard                                # a hard IRQ, not a soft timer callback
    t.fire(5)
    from array import array
    dst = array("H", [0] * 8)
    n = hw.sampler.drain(dst)
    assert n == 5 and list(dst[:5]) == [100, 4000, 2048, 100, 4000]
    assert hw.pwm.pwm.freq() == pico.PWM_FREQ and hw.pwm.pwm.duty_u16() == 123
    hw.pwm.write(40000)
    assert hw.pwm.pwm.duty_u16() == 40000
    hw.pwm.safe()
    assert hw.pwm.pwm.duty_u16() == 123
    hw.led.set(1)
    assert hw.led.pin.value() == 1
    hw.watchdog.feed()
    assert hw.watchdog.wdt.feeds == 1 and hw.watchdog.wdt.timeout == 8388


def sc_timer_irq_allocates_nothing_and_stall_is_counted():
    from boards import pico
    clk = VirtualClock()
    hw = pico.build(clk, f_s=1000, machine=machine, sampler="timer")
    smp = hw.sampler
    smp.start(0)
    t = smp.timer
    from array import array
    dst = array("H", [0] * 32)
    if hasattr(gc, "mem_alloc"):                 # a hard IRQ must not allocate
        t.fire(1)
        smp.drain(dst)
        gc.collect()
        a = gc.mem_alloc()
        for _ in range(10):
            t.fire(20)
            smp.drain(dst)
        assert gc.mem_alloc() - a == 0
    # the timer runs: 100 ms elapsed, 100 interrupts -> nothing missed
    smp.start(0)
    for ms in range(1, 101):
        t.fire(1)
        smp.poll(ms * 1000)
        smp.drain(dst)
    assert smp.ring.missed == 0 and smp.lost() == 0
    # the callback stopped (as the rp2 port does after an exception in it): counted
    for ms in range(101, 201):
        smp.poll(ms * 1000)
    assert 100 - 2 - 1000 // 50 - 1 <= smp.ring.missed <= 100, smp.ring.missed
    assert smp.lost() == smp.ring.missed


def sc_pico_limits_rejected():
    from boards import pico
    for kw in ({"f_s": 30000}, {"sampler": "pio"}, {"wdt_ms": 9000}):
        try:
            pico.build(VirtualClock(), machine=machine, **kw)
        except ValueError as e:
            assert str(e)
        else:
            assert False, kw
    # the beat takes at most spb_max samples: 24 kHz with a 14 ms beat (pulse_p 0.35) is refused
    from device.cli import parse_args, check_board, UsageError
    o = parse_args(["--board", "pico", "--fs", "24000", "--pulse-p", "0.35"])
    try:
        check_board(o)
    except UsageError as e:
        assert "--fs" in str(e) and "<= 10583 us" in str(e) and "<= 18142 Hz" in str(e), str(e)
    else:
        assert False
    o = parse_args(["--board", "pico", "--fs", "12000", "--pulse-p", "0.35"])
    assert check_board(o).fs == 12000
    o = parse_args(["--board", "pico"])
    assert check_board(o).fs == 12000                  # the board's default
    # the ADC paces itself from 48 MHz: a rate it cannot pace is refused at boot (it used to
    # reach the DMA sampler's constructor after the watchdog started: a reset loop)
    for fs, near in ((7000, "6400 or 7500"), (700, "640 or 750")):
        o = parse_args(["--board", "pico", "--fs", str(fs)])
        try:
            check_board(o)
        except UsageError as e:
            assert "--fs must divide the ADC's 48000000 Hz clock" in str(e), str(e)
            assert ("nearest to %d: %s Hz" % (fs, near)) in str(e), str(e)
        else:
            assert False, fs
    for fs in (12000, 8000, 1000, 500, 250):
        assert check_board(parse_args(["--board", "pico", "--fs", str(fs)])).fs == fs


def sc_ring_overrun_drops_new_and_never_moves_tail():
    from device.hw.sampler import Ring
    from array import array
    r = Ring(4)
    for v in range(6):
        t0 = r.tail
        r.put(v)
        assert r.tail == t0                       # the producer never writes the consumer's index
    dst = array("H", [0] * 8)
    n = r.drain(dst)
    assert list(dst[:n]) == [0, 1, 2] and r.overruns == 3 and r.lost() == 3
    # interleave producer and consumer in every order: nothing lost but what is counted
    r = Ring(8)
    seq = 0
    st = [0, -1, True]          # samples received, last value, in order without duplicates
    x = 12345

    def take():
        k = r.drain(dst)
        for i in range(k):
            if dst[i] <= st[1]:
                st[2] = False
            st[1] = dst[i]
        st[0] += k
    for step in range(2000):
        x = (x * 1103515245 + 12345) & 0x3FFFFFFF
        if x & 3:
            r.put(seq & 0xFFFF)
            seq += 1
        else:
            take()
    take()
    assert st[0] + r.overruns == seq and st[2]


class _FakeWlan:
    def __init__(self, mode):
        self.n = 0

    def active(self, on):
        self.on = on

    def connect(self, ssid, pw):
        self.ssid = ssid

    def isconnected(self):
        self.n += 1
        return self.n > 3


class _FakeNetwork:
    STA_IF = 0
    WLAN = _FakeWlan


def sc_pico_w_joins_wifi_with_deadline_and_uses_cyw43_led():
    from boards import pico_w
    clk = VirtualClock()
    hw = pico_w.build(clk, machine=machine, wifi="lab:secret", network=_FakeNetwork(),
                      sampler="timer")
    assert hw.name == "pico_w" and hw.wlan.ssid == "lab"
    assert hw.led.pin.id == "LED"
    assert hw.default_link.startswith("udp://")

    class Never(_FakeWlan):
        def isconnected(self):
            return False

    class Net(_FakeNetwork):
        WLAN = Never
    try:
        pico_w.connect_wifi("x:y", Net(), VirtualClock(), timeout_ms=200)
    except OSError as e:
        assert "200 ms" in str(e)
    else:
        assert False
    try:
        pico_w.connect_wifi("nopassword", Net(), VirtualClock())
    except ValueError:
        pass
    else:
        assert False


class _Ap:
    """An access point that is down until up=True; records what the board does, in order."""

    def __init__(self, events):
        self.up = False
        self.events = events
        ap = self

        class Wlan:
            def __init__(self, mode):
                self.connects = 0

            def active(self, on):
                pass

            def connect(self, ssid, pw):
                self.connects += 1
                ap.events.append("connect")

            def isconnected(self):
                return ap.up

        self.STA_IF = 0
        self.WLAN = Wlan


def sc_pico_w_ap_down_at_boot_watchdog_first_then_reconnects():
    from boards import pico_w
    events = []
    n0 = len(machine.WDT.created)
    ap = _Ap(events)
    real_wdt = machine.WDT

    class Wdt(real_wdt):
        def __init__(self, id=0, timeout=5000):
            real_wdt.__init__(self, id, timeout)
            events.append("wdt")

        def feed(self):
            real_wdt.feed(self)
            events.append("feed")
    machine.WDT = Wdt
    try:
        clk = VirtualClock()
        hw = pico_w.build(clk, machine=machine, wifi="lab:secret", network=ap,
                          wifi_timeout_ms=300, sampler="timer")
    finally:
        machine.WDT = real_wdt
    # built (did not raise, did not return without a watchdog): WDT started before the join,
    # fed while waiting for the access point
    assert events[0] == "wdt" and events.index("wdt") < events.index("connect"), events[:4]
    assert events.count("feed") >= 5
    assert len(machine.WDT.created) > n0
    k = hw.wifi
    assert k is not None and not k.up
    # the keeper retries from idle time with a backoff: 2 s, 4 s, 8 s ...
    c0 = events.count("connect")
    for ms in range(0, 20000, 100):
        k.service(ms)
    tries = events.count("connect") - c0
    assert 3 <= tries <= 5, tries
    ap.up = True
    k.service(21000)
    assert k.up
    # the access point drops: a new join at once, then back up
    ap.up = False
    c1 = events.count("connect")
    k.service(22000)
    assert not k.up and k.drops == 1 and events.count("connect") == c1 + 1
    ap.up = True
    k.service(23000)
    assert k.up


def sc_latch_survives_watchdog_reset_not_soft_reset():
    from device.latch import Latch
    from shared import protocol as P
    machine._power_cycle()
    lt = Latch(None, machine)
    assert lt.boot() is False and lt.cause == P.RESET_POWER_ON
    lt.arm()
    lt.set()                                   # QUARANTINE entered
    # a watchdog reset while latched and armed
    machine._reset_cause[0] = machine.WDT_RESET
    lt = Latch(None, machine)
    assert lt.boot() is True and lt.cause == P.RESET_WATCHDOG and lt.restored
    lt.clear()                                 # the host's CLEAR
    lt.disarm()                                # clean exit, then machine.reset() (mpremote)
    lt = Latch(None, machine)
    assert lt.boot() is False and lt.cause == P.RESET_SOFT
    # a hang: armed, not latched, the watchdog fires -> starts latched
    lt.arm()
    lt = Latch(None, machine)
    assert lt.boot() is True and lt.cause == P.RESET_WATCHDOG
    lt.clear()
    lt.crash()                                 # an exception escaped the beat
    lt = Latch(None, machine)
    assert lt.boot() is True and lt.cause == P.RESET_CRASH
    lt.clear()
    # a power loss clears the scratch registers: without a file the latch is gone
    lt.set()
    machine._power_cycle()
    lt = Latch(None, machine)
    assert lt.boot() is False and lt.cause == P.RESET_POWER_ON
    machine._power_cycle()


if __name__ == "__main__":
    fn = globals()["sc_" + sys.argv[2]]
    try:
        fn()
    except Exception as e:
        sys.print_exception(e)
        sys.exit(1)
    sys.exit(0)
