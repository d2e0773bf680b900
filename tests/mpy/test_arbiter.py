# Arbiter, cores, entropy model, genome (device/arbiter.py). Runs under pytest and MicroPython.
import math
import sys
import gc

from device import arbiter as A
from shared import protocol_codes as C
from device.arbiter import Arbiter, normalise4, mul16, sigmoid_q16
from shared.vibration import LEVEL_NONE

MPY = sys.implementation.name == "micropython"
SEED = (0.0, 0.0, 0.0, 0.0, 0.12)          # the seed's threat = sigmoid(0.12 * anoms)


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_seed_validation_five_anoms():
    a = Arbiter(model=SEED)
    assert abs(a.threat_q16(5) / 65536.0 - 0.6457) < 5e-5
    assert abs(a.threat_q16(5) - _sig(0.6) * 65536) <= 2
    a.step(LEVEL_NONE, 0, 0, 5)
    assert a.threat == a.threat_q16(5) and a.decision == C.DECISION_ALERT


def test_sigmoid_table_accuracy():
    for i in range(-60000, 60000, 977):
        z = max(-49151, min(49151, i))
        got = sigmoid_q16(i) / 65536.0
        want = min(65535 / 65536.0, _sig(z / 4096.0))
        assert abs(got - want) < 3e-5, (i, got, want)


def test_feature_model_and_risk_anoms():
    a = Arbiter(model=(14.0, 6.0, 1.5, 0.5, 0.01))
    # a healthy window: rms(y) 0.07 g (-3.84 octaves), kurtosis 3, crest 4, no anomalies
    lv, ku, cr = int(-3.84 * 256), int(1.585 * 256), int(2.0 * 256)
    z = 14.0 + 6.0 * -3.84 + 1.5 * 1.585 + 0.5 * 2.0
    assert abs(a.threat_q16(0, lv, ku, cr) / 65536.0 - _sig(z)) < 3e-3
    assert a.step(lv, ku, cr, 0) == C.DECISION_NOOP
    # an impacting machine: louder and impulsive
    assert a.step(int(-1.5 * 256), int(4.0 * 256), int(3.3 * 256), 800) == C.DECISION_QUARANTINE
    a.risk_anoms = 10                          # genome risk anoms add to the window count
    a.step(lv, ku, cr, 30)
    assert a.value("anoms") == 40
    for bad in ((float("inf"), 0, 0, 0, 0), (0, 20.0, 0, 0, 0), (0, 0, 0, 0, 9.0),
                (100.0, 0, 0, 0, 0), (float("nan"), 0, 0, 0, 0)):
        try:
            a.set_model(*bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert a.model()[1] == 6.0


def test_threat_thresholds_exact_at_q16():
    a = Arbiter(model=SEED)
    assert a.step(LEVEL_NONE, 0, 0, 3) == C.DECISION_NOOP               # 0.589
    assert a.step(LEVEL_NONE, 0, 0, 4) == C.DECISION_ALERT              # 0.618
    assert a.step(LEVEL_NONE, 0, 0, 14) == C.DECISION_ALERT             # 0.843
    assert a.step(LEVEL_NONE, 0, 0, 15) == C.DECISION_QUARANTINE        # 0.858
    # the external (sensor / coherence) threat is a floor under the model's
    assert a.step(LEVEL_NONE, 0, 0, 0, 0, 50000) == C.DECISION_ALERT
    assert a.step(LEVEL_NONE, 0, 0, 0, 0, 60000) == C.DECISION_QUARANTINE
    assert a.value("threat_model") < 40000
    a.set_thresholds(alert=0.7)
    assert a.step(LEVEL_NONE, 0, 0, 5) == C.DECISION_NOOP               # 0.646 < 0.7
    try:
        a.set_thresholds(alert=0.9, quarantine=0.8)
    except ValueError:
        pass
    else:
        raise AssertionError("alert above quarantine accepted")


def test_balance_and_optimize_conditions():
    a = Arbiter(model=SEED)
    # B core: |actuator error| > 0.25 at the neutral B weight -> APPLY_BALANCE
    assert a.step(LEVEL_NONE, 0, 0, 0, int(0.30 * 65536)) == C.DECISION_APPLY_BALANCE
    assert abs(a.value("stability") - int(0.30 * 65536)) <= 8
    assert a.step(LEVEL_NONE, 0, 0, 0, int(0.20 * 65536)) == C.DECISION_NOOP
    # R core: many anomalies -> repair_score >= 0.1 blocks BALANCE (repair first)
    a.set_seed_model(0.0, -20.0)               # keep the threat low
    assert a.step(LEVEL_NONE, 0, 0, 60, int(0.30 * 65536)) == C.DECISION_NOOP
    assert a.value("repair") == mul16(a.R, (60 << 16) // 100)
    # O core: opt_gain > 0.1 needs wO > 0.833 -> APPLY_OPTIMIZE
    a.set_genome(0.02, 0.02, 0.06, 0.90)
    assert a.step(LEVEL_NONE, 0, 0, 0) == C.DECISION_APPLY_OPTIMIZE
    assert a.value("gain") == (a.O * 7864 + 32768) >> 16


def test_genome_relaxes_home_on_time_and_optimizes_when_late():
    a = Arbiter(model=SEED, period_s=0.004211)
    home = (a.R, a.B, a.E, a.O)
    # a beat that is 2 ms late every time: e = T_Lambda - interval = -2 ms (Q16 seconds)
    late = -131
    for _ in range(2500):
        a.step(LEVEL_NONE, 0, 0, 0)
        a.recalibrate(late)
    assert a.step(LEVEL_NONE, 0, 0, 0) == C.DECISION_APPLY_OPTIMIZE and a.O > 0.84 * 65536
    assert a.R + a.B + a.E + a.O == 65536
    # on time again (|e| < eps = 1e-4 s): the genome returns home
    for _ in range(3000):
        a.step(LEVEL_NONE, 0, 0, 0)
        a.recalibrate(0)
    assert a.step(LEVEL_NONE, 0, 0, 0) == C.DECISION_NOOP
    for now, then in zip((a.R, a.B, a.E, a.O), home):
        assert abs(now - then) < 0.05 * 65536, (now, then)


def test_e_feedback_formula():
    a = Arbiter(model=(4.0, 0, 0, 0, 0))       # threat sigmoid(4) = 0.982 > 0.5
    a.set_genome(0.3, 0.3, 0.15, 0.25)         # O < 0.3: the (1 - O/0.3) factor is positive
    a.step(LEVEL_NONE, 0, 0, 0)
    o0 = a.O
    a.recalibrate(0)
    assert a.value("t_threat") == 0
    th = a.threat
    o = o0                                     # output 0 at e = 0
    f = 65536 - (o * 10) // 3
    e = mul16(mul16(mul16(9830, th), 65535), f)
    e = max(3277, min(19661, e))
    r, b, ee, oo = normalise4(int(0.3 * 65536) + 1, int(0.3 * 65536), e, o)
    assert abs(a.E - ee) <= 2 * 65536 // 256, (a.E, ee)   # relaxed by 1/256 toward home


def test_normalise4_exact_sum():
    for w in ((1, 1, 1, 1), (65536, 3, 0, 0), (12345, 2, 7, 9999), (0, 0, 0, 5)):
        r = normalise4(*w)
        assert sum(r) == 65536 and min(r) >= 0


def test_zero_alloc_per_beat():
    if not MPY:
        return
    a = Arbiter()
    for i in range(20):
        A.step(a.st, -900, 400, 500, i, 1000, 0)
        A.recal(a.st, a.exp, 5, 1)
    gc.collect()
    a0 = gc.mem_alloc()
    for i in range(200):
        A.step(a.st, -900, 400, 500, i & 7, 1000, 0)
        A.recal(a.st, a.exp, -3, i & 1)
    assert gc.mem_alloc() - a0 == 0
