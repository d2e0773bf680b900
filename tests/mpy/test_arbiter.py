# Arbiter, cores, entropy model, genome (device/arbiter.py). Runs under pytest and MicroPython.
import math
import sys
import gc

from device import arbiter as A
from device.arbiter import Arbiter, normalise4, mul16

MPY = sys.implementation.name == "micropython"


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_seed_validation_five_anoms():
    a = Arbiter()
    assert abs(a.threat_q16(5) / 65536.0 - 0.6457) < 5e-5
    assert a.threat_q16(5) == round(_sig(0.6) * 65536)
    a.step(5)
    assert a.threat == a.threat_q16(5) and a.decision == A.ALERT


def test_threat_table_matches_sigmoid_and_model_change():
    a = Arbiter(a_max=300)
    for n in (0, 1, 7, 50, 100, 300, 5000):
        want = min(65535, round(_sig(0.12 * min(n, 300)) * 65536))
        assert a.threat_q16(n) == want, n
    a.set_model(-0.05, 2.0)
    assert a.threat_q16(40) == round(_sig(0.0) * 65536)
    a.risk_anoms = 10                          # genome risk anoms add to the window count
    a.step(30)
    assert a.anoms == 40 and a.threat == 32768
    try:
        a.set_model(float("inf"), 0)
    except ValueError:
        pass
    else:
        raise AssertionError("inf weight accepted")


def test_staged_model_swaps_when_complete():
    a = Arbiter(a_max=100)
    old = a.threat_q16(5)
    a.stage_model(0.5, -1.0)
    assert a.model_pending
    steps = 0
    while not a.stage_step(30):
        steps += 1
        assert a.threat_q16(5) == old          # the old table serves until the swap
    assert steps == 3 and not a.model_pending
    assert a.threat_q16(5) == round(_sig(1.5) * 65536) and a.w == 0.5 and a.b == -1.0
    assert a.stage_step(30) is False           # nothing staged
    b = Arbiter(a_max=100)
    b.set_model(0.5, -1.0)
    assert [a.threat_q16(i) for i in range(101)] == [b.threat_q16(i) for i in range(101)]


def test_threat_thresholds():
    a = Arbiter()                              # w = 0.12, b = 0
    assert a.step(3) == A.NOOP                 # 0.589
    assert a.step(4) == A.ALERT                # 0.618
    assert a.step(14) == A.ALERT               # 0.843
    assert a.step(15) == A.QUARANTINE          # 0.858
    # exact Q16 boundaries: threat >= threshold
    for p, code in ((0.85, A.QUARANTINE), (0.60, A.ALERT)):
        q = round(p * 65536)
        for v, want in ((q, code), (q - 1, code - 1 if code == A.QUARANTINE else A.NOOP)):
            a.set_model(0.0, math.log((v / 65536.0) / (1 - v / 65536.0)))
            assert a.threat_q16(0) == v
            got = a.step(0)
            assert got == want, (p, v, got, want)
    a.set_thresholds(alert=0.7)
    a.set_model(0.0, math.log(0.65 / 0.35))
    assert a.step(0) == A.NOOP
    try:
        a.set_thresholds(alert=0.9, quarantine=0.8)
    except ValueError:
        pass
    else:
        raise AssertionError("alert > quarantine accepted")


def test_balance_and_optimize_thresholds():
    a = Arbiter(w=0.0, b=0.0)                  # threat 0.5 whatever the anomalies
    a.set_genome(0.25, 0.25, 0.25, 0.25)
    assert a.step(0, a_err(0.30)) == A.APPLY_BALANCE       # stability 0.30 > 0.25
    assert abs(a.stability - a_err(0.30)) <= 2
    assert a.step(0, -a_err(0.30)) == A.APPLY_BALANCE      # |error|
    assert a.step(0, a_err(0.25)) == A.NOOP                # 0.25 is not > 0.25
    assert a.step(39, a_err(0.5)) == A.APPLY_BALANCE       # repair 0.25*0.39 = 0.0975 < 0.1
    assert a.step(40, a_err(0.5)) == A.NOOP                # repair 0.1: not < 0.1
    assert a.repair_score == mul16(16384, (40 << 16) // 100)
    assert a.step(1000, 0) == A.NOOP and a.urgency == round(0.9 * 65536)
    a.set_genome(0.05, 0.05, 0.05, 0.85)       # expected gain 0.12 * 0.85 = 0.102 > 0.1
    assert a.step(0, 0) == A.APPLY_OPTIMIZE and a.opt_gain == a.expected_gain
    a.set_genome(0.06, 0.06, 0.05, 0.83)       # 0.0996
    assert a.step(0, 0) == A.NOOP


def a_err(x):
    return round(x * 65536)


def test_e_feedback_formula_and_normalisation():
    a = Arbiter(w=0.0, b=math.log(0.9 / 0.1))  # threat 0.9 > 0.5
    a.set_genome(0.35, 0.35, 0.15, 0.15)       # O well below 0.3: the feedback is not clamped
    th = a.threat_q16(0) / 65536.0
    for t in range(12):
        a.step(0)
        r, b, o = a.R / 65536.0, a.B / 65536.0, a.O / 65536.0
        a.recalibrate(0)                       # dT = 0: PID output 0, O unchanged before norm
        assert a.t_threat == t and a.dO == 0
        e_raw = 0.15 * th * math.exp(-t / 50.0) * (1 - o / 0.3)
        e_raw = min(0.30, max(0.05, e_raw))
        tot = r + b + e_raw + o
        for got, want in ((a.R, r / tot), (a.B, b / tot), (a.E, e_raw / tot), (a.O, o / tot)):
            assert abs(got / 65536.0 - want) < 6e-5, (t, got / 65536.0, want)
        assert a.R + a.B + a.E + a.O == 65536
    # O above 0.3 makes (1 - O/0.3) negative: E clamps to 0.05
    a.set_genome(0.2, 0.2, 0.2, 0.4)
    a.step(0)
    r, b, o = a.R, a.B, a.O
    a.recalibrate(0)
    tot = r + b + o + round(0.05 * 65536)
    assert abs(a.E - round(0.05 * 65536) * 65536 / tot) <= 2
    # threat back to 0.5 or below: E = 0.10 and t restarts
    a.set_model(0.0, 0.0)
    a.step(0)
    r, b, o = a.R, a.B, a.O
    a.recalibrate(0)
    assert a.t_threat == -1
    assert abs(a.E - round(0.10 * 65536) * 65536 / (r + b + o + round(0.10 * 65536))) <= 2


def test_genomic_o_update_and_clamp():
    a = Arbiter()
    a.step(0)
    o0 = a.O
    a.recalibrate(-1035)                       # seed dT: PID output -0.009474 -> dO = +0.009474
    assert abs(a.dO - 621) <= 1
    a2 = Arbiter()
    for _ in range(400):                       # large negative error: dO = +0.05 per beat
        a2.step(0)
        a2.recalibrate(-30000)
    assert a2.dO == round(0.05 * 65536)
    # O raw is clamped at 0.9 before normalisation; E = 0.10, so O -> 0.9 / 1.0 in the limit
    assert abs(a2.O / 65536.0 - 0.9) < 0.01 and a2.O > o0


def test_normalise4_exact_sum():
    seed = 12345
    for _ in range(2000):
        v = []
        for _ in range(4):
            seed = (seed * 48271) % 2147483647
            v.append(seed % 65537)
        if sum(v) == 0:
            continue
        w = normalise4(*v)
        assert sum(w) == 65536, (v, w)
        tot = float(sum(v))
        for got, x in zip(w, v):
            assert abs(got - x * 65536 / tot) <= 3, (v, w)


def test_mul16():
    for a_, b_ in ((0, 0), (65536, 65536), (65535, 1), (12345, 54321), (32768, 32768)):
        assert abs(mul16(a_, b_) - a_ * b_ / 65536.0) <= 1


def test_bad_genome_rejected():
    a = Arbiter()
    for g in ((0, 0, 0, 0), (-0.1, 0.5, 0.3, 0.3), (1.5, 0, 0, 0)):
        try:
            a.set_genome(*g)
        except ValueError:
            continue
        raise AssertionError(g)


def test_zero_alloc_per_beat():
    if not MPY:
        return
    a = Arbiter()
    for i in range(60):
        a.step(i % 20, i * 500)
        a.recalibrate(-1035)
    gc.collect()
    gc.disable()
    try:
        m0 = gc.mem_alloc()
        for i in range(600):
            a.step(i % 20, i * 50)
            a.recalibrate(-1035)
        m1 = gc.mem_alloc()
    finally:
        gc.enable()
    assert m1 - m0 == 0, m1 - m0
