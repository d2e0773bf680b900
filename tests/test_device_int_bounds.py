"""Every integer the device maths holds on the beat path fits the Pico's words.

Python-level code (bytecode, @native): |v| < 2^30, the Pico's small-int range (the 64-bit unix
port would silently use bigints past it). Viper kernels compute in machine words: |v| < 2^31,
a signed 32-bit register on the Pico (the 64-bit unix port would not wrap where the Pico does),
and every word they store back into a state array is in 0..2^31-1 (a ptr32 load zero-extends on
a 64-bit port: shared/vibration.py's note).

Checked on CPython with a line tracer: after every line of the beat-path functions, every int
local and every int attribute of `self` must stay within its limit, under worst-case and random
inputs; and with `_Checked` inputs (an int subclass that checks every arithmetic result) the
Python-level expression temporaries too. (shared/sha256.py's viper code works in unsigned
32-bit words with masks and is checked against hashlib on both runtimes instead.)"""
import array
import random
import sys

import pytest

from shared import kairos as K
from shared import vibration as V
from device import health as H
from device.pid import PID, genomic_pid
from device.arbiter import Arbiter
from device import arbiter as A

LIMIT = 1 << 30
VIPER_LIMIT = 1 << 31
# Python-level beat-path functions
HOT = {"update", "update_error", "tick", "_step", "recalibrate"}
# viper kernels (machine words)
VIPER = {"_add", "end_beat", "add_block", "coherence_limbs", "_limb_exp", "_limb_shr",
         "_ratio_q16", "bitlen", "_rnd_mul", "block", "_log2_q8", "_log2_3", "_bitlen", "step",
         "recal", "mul16", "_div16", "_sigmoid", "beat", "_corr", "_prep"}
FILES = ("kairos.py", "qmath.py", "pid.py", "arbiter.py", "vibration.py", "health.py", "lag.py")


class _Bounds:
    """Traces the beat-path functions; worst = the largest |int| relative to its limit."""

    def __init__(self):
        self.worst = 0.0
        self.where = None
        self.lines = 0

    def _check(self, frame, limit):
        self.lines += 1
        for name, v in frame.f_locals.items():
            if type(v) is int and abs(v) / limit >= self.worst:
                self.worst, self.where = abs(v) / limit, (frame.f_code.co_name, name, v,
                                                          frame.f_lineno)
        me = frame.f_locals.get("self")
        if me is not None and hasattr(me, "__dict__"):
            for name, v in vars(me).items():
                if type(v) is int and abs(v) / LIMIT >= self.worst:
                    self.worst, self.where = abs(v) / LIMIT, (frame.f_code.co_name,
                                                              "self." + name, v, frame.f_lineno)

    def tracer(self, frame, event, arg):
        co = frame.f_code
        if not co.co_filename.endswith(FILES):
            return None
        if co.co_name in VIPER:
            limit = VIPER_LIMIT
        elif co.co_name in HOT:
            limit = LIMIT
        else:
            return None

        def local(frame, event, arg):
            if event in ("line", "return"):
                self._check(frame, limit)
            return local
        return local

    def run(self, fn):
        sys.settrace(self.tracer)
        try:
            fn()
        finally:
            sys.settrace(None)
        assert self.lines > 0
        assert self.worst < 1.0, (self.worst, self.where)
        return self.worst


def _stored_words_ok(arr, outputs=()):
    # what a viper kernel reads back through ptr32 must be 0..2^31-1; `outputs` are words only
    # Python reads (signed is fine there: array('i') indexing sign-extends)
    bad = [(i, v) for i, v in enumerate(arr) if i not in outputs and not 0 <= v < VIPER_LIMIT]
    assert not bad, bad[:5]
    assert all(-VIPER_LIMIT <= arr[i] < VIPER_LIMIT for i in outputs)


@pytest.mark.parametrize("bits,per_beat", [(13, 4), (13, 8), (15, 2), (15, 4), (10, 16)])
def test_emissary_worst_case_and_noise(bits, per_beat):
    top = (1 << (bits - 1)) - 1
    rnd = random.Random(bits * 1000 + per_beat)

    def work():
        em = K.Emissary(rate_hz=250, omega=2.0, lag=2, bits=bits, max_samples_per_beat=per_beat,
                        hist_len=64)
        for rep in range(3):
            for b in range(300):
                for i in range(per_beat):
                    k = b * per_beat + i
                    if rep == 0:
                        x = top if k & 1 else -top       # max |d| and d*d_L every sample
                    elif rep == 1:
                        x = rnd.randrange(-top, top + 1)
                    else:
                        x = top if (k >> 1) & 1 else -top  # d*d_L = -top^2: negative T
                    em.add(x)
                em.end_beat()
        # window totals far beyond 2^30 are held in limbs
        t = em.window_totals()
        assert max(abs(v) for v in t[:4]) >= 1 << 24
        _stored_words_ok(em.mem)
        _stored_words_ok(em.dl)
        _stored_words_ok(em.ring)

    _Bounds().run(work)


@pytest.mark.parametrize("amp", [4095, 1500, 20])
def test_features_worst_case(amp):
    rnd = random.Random(amp)

    def work():
        f = V.Features(12000, decim=48, max_samples_per_beat=134)
        buf = array.array("H", bytes(2 * 134))
        for b in range(700):
            n = 134 if b % 3 == 0 else 51
            for i in range(n):
                if b < 300:
                    buf[i] = 4095 if i & 1 else 0          # |y| = 4095 every sample
                else:
                    buf[i] = max(0, min(4095, 2048 + rnd.randrange(-amp, amp + 1)))
            f.block(buf, n)
            f.end_beat(500 if b == 10 else 0)
        _stored_words_ok(f.mem, outputs=(V.LEVEL, V.KURT, V.CREST))

    _Bounds().run(work)


def test_health_and_arbiter_kernels_worst_case():
    def work():
        h = H.SignalHealth(0.004, 39322, 55706)
        for i in range(3000):
            h.beat(0 if i % 7 == 0 else 50, i & 1, 1000, i & 3, i & 1)
        _stored_words_ok(h.st)
        a = Arbiter(a_max=8191, model=(63.9, 15.9, -15.9, 15.9, 7.99))
        for lv in (V.LEVEL_NONE, -8192, 0, 8191):
            for anoms in (0, 8191, 9000):
                for err in (65536, -65536):
                    a.step(lv, 8191, -8191, anoms, err, 65535)
                    a.recalibrate(-65536)
                    a.recalibrate(65536)
        _stored_words_ok(a.st)

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
        a = Arbiter(a_max=8191, model=(0.0, 0.0, 0.0, 0.0, 0.12))
        for anoms in (0, 5, 100, 8191, 100000, -5):
            for err in (0, 65536, -65536, 1 << 29, -(1 << 29)):
                a.step(V.LEVEL_NONE, 0, 0, anoms, err)
                a.recalibrate(-65536 * 5)
                a.recalibrate(65536 * 5)
        a.set_genome(1.0, 1.0, 1.0, 1.0)
        a.set_model(50.0, 0.0, 0.0, 0.0, 0.0)        # threat saturated: E feedback path
        a.set_genome(0.0, 0.0, 0.01, 1.0)
        for _ in range(700):
            a.step(V.LEVEL_NONE, 0, 0, 3)
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


def test_pid_and_arbiter_temporaries_below_2_30():
    _Checked.worst = 0
    for kp, ki, kd in ((4095.0, 100.0, 0.0), (0.0, 0.0, 40.0), (-4095.0, -100.0, -40.0)):
        p = PID(kp, ki, kd, sample_time=0.01, output_limits=(-32, 32))
        for m in (65536 * 3, -65536 * 3, 65536, -65536, 1, 0) * 5:
            p.update(_Checked(m))
            p.update_error(_Checked(m))
            p.tick(_Checked(m), _Checked(9000))
    # the arbiter's Python-level recalibrate (the genomic PID, then the viper kernel)
    a = Arbiter(a_max=8191)
    for err in (65536, -(1 << 16), 0):
        a.recalibrate(_Checked(err))
    assert _Checked.worst > 1 << 20


def test_beat_folds_the_feature_words_of_vibration():
    """device/beat.py folds shared/vibration.py's LEVEL, KURT, CREST, ANOMS word indices as its
    own consts (an imported name is a module global: heap on a Pico): they must agree."""
    import device.beat as b
    import shared.vibration as v
    assert (b._V_LEVEL, b._V_KURT, b._V_CREST, b._V_ANOMS) == (v.LEVEL, v.KURT, v.CREST, v.ANOMS)
    # and the words TELEMETRY reads straight (kairos COHERENCE, arbiter THREAT and O, pid)
    import shared.kairos as k
    import device.arbiter as a
    import device.pid as p
    assert b._K_COH == k.COHERENCE
    assert (b._A_THREAT, b._A_O) == (a._THREAT, a._O)
    assert (b._P_SP, b._P_OUT, b._P_B) == (p._SP, p._OUT, p._B)
