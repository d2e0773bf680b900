"""Every integer the device maths holds on the beat path stays below 2^30 in magnitude (the
Pico's small-int range; the 64-bit unix port would silently use bigints past it).

Checked on CPython with a line tracer: after every line of the beat-path functions of
shared/kairos.py, device/pid.py and device/arbiter.py, every int local and every int attribute
of `self` must satisfy |v| < 2^30, under worst-case and random inputs. (Sub-expression
temporaries are covered by the bounds argued in docs/DEVICE.md.)"""
import random
import sys

import pytest

from shared import kairos as K
from device.pid import PID, genomic_pid
from device.arbiter import Arbiter

LIMIT = 1 << 30
HOT = {"add", "end_beat", "_sub", "_coherence_limbs", "_limb_exp", "_limb_shr", "_ratio_q16",
       "_bitlen", "update", "update_error", "tick", "step", "recalibrate", "mul16", "_div16"}
FILES = ("kairos.py", "pid.py", "arbiter.py")


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


@pytest.mark.parametrize("bits,per_beat", [(12, 32), (12, 200), (15, 8), (15, 64), (8, 1000)])
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
