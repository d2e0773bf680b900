"""Every integer the device maths holds on the beat path stays below 2^30 in magnitude (the
Pico's small-int range; the 64-bit unix port would silently use bigints past it).

Checked on CPython with a line tracer: after every line of the beat-path functions of
shared/kairos.py, shared/qmath.py, device/pid.py and device/arbiter.py, every int local and
every int attribute of `self` must satisfy |v| < 2^30, under worst-case and random inputs; and
with `_Checked` inputs (an int subclass that checks every arithmetic result) the expression
temporaries too."""
import random
import sys

import pytest

from shared import kairos as K
from device.pid import PID, genomic_pid
from device.arbiter import Arbiter

LIMIT = 1 << 30
HOT = {"add", "end_beat", "_sub", "coherence_limbs", "_limb_exp", "_limb_shr", "_ratio_q16",
       "bitlen", "update", "update_error", "tick", "step", "recalibrate", "mul16", "_div16"}
FILES = ("kairos.py", "qmath.py", "pid.py", "arbiter.py")


class _Bounds:
    def __init__(self):
        self.worst = 0
        self.where = None
        self.lines = 0

    def _check(self, frame):
        self.lines += 1
        for name, v in frame.f_locals.items():
            if type(v) is int and abs(v) >= self.worst:
                self.worst, self.where = abs(v), (frame.f_code.co_name, name, frame.f_lineno)
        me = frame.f_locals.get("self")
        if me is not None and hasattr(me, "__dict__"):
            for name, v in vars(me).items():
                if type(v) is int and abs(v) >= self.worst:
                    self.worst, self.where = abs(v), (frame.f_code.co_name, "self." + name,
                                                      frame.f_lineno)

    def tracer(self, frame, event, arg):
        co = frame.f_code
        if co.co_name in HOT and co.co_filename.endswith(FILES):
            def local(frame, event, arg):
                if event in ("line", "return"):
                    self._check(frame)
                return local
            return local
        return None

    def run(self, fn):
        sys.settrace(self.tracer)
        try:
            fn()
        finally:
            sys.settrace(None)
        assert self.lines > 0
        assert self.worst < LIMIT, (self.worst, self.where)
        return self.worst


@pytest.mark.parametrize("bits,per_beat", [(12, 32), (12, 200), (15, 8), (15, 64), (8, 255)])
def test_emissary_worst_case_and_noise(bits, per_beat):
    top = (1 << bits) - 1
    rnd = random.Random(bits * 1000 + per_beat)
    cap = 3 * max(1, 1000 // per_beat) + 4

    def work():
        em = K.Emissary(f_s=1000, omega=2.0, lag=2, adc_bits=bits,
                        max_samples_per_beat=per_beat, capacity=cap,
                        window_s=max(1.0, per_beat / 1000.0))
        for rep in range(3):
            for i in range(per_beat * 3):
                if rep == 0:
                    x = top if i & 1 else 0            # max |d| and d*d_L every sample
                elif rep == 1:
                    x = rnd.randrange(top + 1)
                else:
                    x = top if (i >> 1) & 1 else 0     # d*d_L = -top^2: negative T
                em.add(x)
                if em.room() == 0:
                    em.end_beat()
            em.end_beat()
        # window totals far beyond 2^30 are held in limbs
        t = em.window_totals()
        assert max(abs(v) for v in t[:4]) >= 1 << 24 or bits == 8

    _Bounds().run(work)


def test_coherence_limbs_extremes():
    vals = [0, 1, 5, (1 << 24) - 1, 1 << 24, (1 << 36) + 12345, (1 << 40) - 1]

    def work():
        for a in vals:
            for b in vals:
                for sgn in (1, -1):
                    K.coherence_q16(sgn * a, -sgn * b // 3, max(a, 1), max(b, 1))
                    K.coherence_q16(sgn * a, sgn * a, 1, 1)            # saturates
    _Bounds().run(work)


def test_pid_extremes():
    def work():
        for kp, ki, kd, st in ((4095.0, 0.0, 0.0, 0.01), (0.0, 1500.0, 0.0, 0.01),
                               (0.0, 0.0, 40.0, 0.01), (0.6, 0.1, 0.05, 0.004211),
                               (-4095.0, -1000.0, -40.0, 0.01)):
            p = PID(kp, ki, kd, sample_time=st, output_limits=(-32, 32),
                    integral_limits=(-1e6, 1e6))
            for m in (65536 * 5, -65536 * 5, 65536, -65536, 0, 65536, -65536) * 20:
                p.update(m)
                p.update_error(m)
                p.tick(m, 7000)
        g = genomic_pid(0.004211)
        for _ in range(200):
            g.update_error(-1035)
    _Bounds().run(work)


def test_arbiter_extremes():
    def work():
        a = Arbiter(a_max=8191)
        for anoms in (0, 5, 100, 8191, 100000, -5):
            for err in (0, 65536, -65536, 1 << 29, -(1 << 29)):
                a.step(anoms, err)
                a.recalibrate(-65536 * 5)
                a.recalibrate(65536 * 5)
        a.set_genome(1.0, 1.0, 1.0, 1.0)
        a.set_model(0.0, 50.0)                       # threat saturated: E feedback path
        a.set_genome(0.0, 0.0, 0.01, 1.0)
        for _ in range(700):
            a.step(3, 0)
            a.recalibrate(0)
    _Bounds().run(work)


# ---------- temporaries: ints that check every arithmetic result ----------

class _Checked(int):
    """An int whose every arithmetic result (with any int) is checked against 2^30 and stays
    _Checked, so expression temporaries inside the device code are covered too."""
    worst = 0


def _wrap(name):
    base = getattr(int, name)

    def op(self, *args):
        r = base(self, *args)
        if r is NotImplemented:
            return r
        a = -r if r < 0 else r
        if a > _Checked.worst:
            _Checked.worst = a
        assert a < LIMIT, "%s(%d, %r) = %d reaches 2^30" % (name, int(self), args, r)
        return _Checked(r)
    return op


for _n in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__lshift__",
           "__rlshift__", "__rshift__", "__rrshift__", "__floordiv__", "__rfloordiv__", "__mod__",
           "__rmod__", "__and__", "__rand__", "__or__", "__ror__", "__neg__", "__abs__"):
    setattr(_Checked, _n, _wrap(_n))


def test_checked_int_catches_overflow():
    with pytest.raises(AssertionError):
        _Checked(1 << 15) * (1 << 15)
    assert _Checked(3) * 4 == 12 and type(_Checked(3) + 1) is _Checked


@pytest.mark.parametrize("bits,per_beat,omega", [(12, 32, 0.0), (12, 64, 0.0), (15, 8, 2.0),
                                                  (14, 40, 0.0), (12, 200, 31.0)])
def test_emissary_temporaries_below_2_30(bits, per_beat, omega):
    top = (1 << bits) - 1
    rnd = random.Random(per_beat)
    _Checked.worst = 0
    em = K.Emissary(f_s=1000, omega=omega, lag=1, adc_bits=bits, max_samples_per_beat=per_beat,
                    window_s=max(1.0, per_beat / 1000.0), capacity=64, warmup=4)
    pat = [0, top, 0, top, 255, 0, 257, 257 + 255, 0, top // 2]   # also d*d_L = 255*257 = 65535
    for rep in range(4):
        for i in range(per_beat * 2):
            x = pat[i % len(pat)] if rep < 2 else rnd.randrange(top + 1)
            em.add(_Checked(x))
            if em.room() == 0:
                em.end_beat()
        em.end_beat()
    assert _Checked.worst > 1 << 20


def test_pid_and_arbiter_temporaries_below_2_30():
    _Checked.worst = 0
    for kp, ki, kd in ((4095.0, 100.0, 0.0), (0.0, 0.0, 40.0), (-4095.0, -100.0, -40.0)):
        p = PID(kp, ki, kd, sample_time=0.01, output_limits=(-32, 32))
        for m in (65536 * 3, -65536 * 3, 65536, -65536, 1, 0) * 5:
            p.update(_Checked(m))
            p.update_error(_Checked(m))
            p.tick(_Checked(m), _Checked(9000))
    a = Arbiter(a_max=8191)
    for anoms in (0, 8191, 9000):
        for err in (65536, -(1 << 29)):
            a.step(_Checked(anoms), _Checked(err))
            a.recalibrate(_Checked(-65536 * 3))
    a.set_model(0.0, 50.0)
    a.set_genome(0.0, 0.0, 0.01, 1.0)
    for _ in range(80):
        a.step(_Checked(3))
        a.recalibrate(_Checked(0))
    assert _Checked.worst > 1 << 20
