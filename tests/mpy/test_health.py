# Sensor health and coherence loss (device/health.py). Runs under pytest and MicroPython.
import gc
import sys

from device.health import SignalHealth, EVENTS

MPY = sys.implementation.name == "micropython"
ALERT = 39322          # 0.60
QUAR = 55706           # 0.85
COLL = 1               # kairos CSTATE bit 0: collapsed
BELOW = 2              # bit 1: C < I_c - hysteresis


def _h():
    # 4 ms beats: alert after 0.25 s (62 beats), quarantine after 2 s (500), loss after 0.25 s
    return SignalHealth(0.004, ALERT, QUAR)


def test_healthy_beats_raise_nothing():
    h = _h()
    for _ in range(100):
        assert h.beat(50, 0, 0, COLL, True) == 0
    assert h.events == 0 and not h.sensor_fault and not h.coherence_lost


def test_stuck_then_dead_sensor_alert_then_quarantine():
    h = _h()
    ext = [h.beat(50, 1, 0, 0, False) for _ in range(600)]
    assert ext[60] == 0 and ext[62] == (ALERT + QUAR) >> 1     # 0.25 s: ALERT level
    assert ext[499] == (QUAR + 65535) >> 1 and ext[200] == (ALERT + QUAR) >> 1
    assert h.events == 1 and h.sensor_fault and h.stuck_beats == 600
    assert h.beat(50, 0, 0, 0, False) == 0 and not h.sensor_fault   # samples move again
    for _ in range(70):
        e = h.beat(0, 0, 0, 0, False)                              # no samples at all
    assert e == (ALERT + QUAR) >> 1 and h.dead_beats == 70


def test_overruns_are_events():
    h = _h()
    h.beat(50, 0, 7, 0, False)
    assert h.events == 7


def test_coherence_loss_needs_arming_grace_and_relearns():
    h = _h()
    for _ in range(100):
        h.beat(50, 0, 0, BELOW, False)           # never collapsed: a machine not known steady
    assert not h.coherence_lost
    for _ in range(10):
        h.beat(50, 0, 0, COLL, True)             # collapsed at a learned lag: armed
    assert h.armed
    for i in range(62):
        ext = h.beat(50, 0, 0, BELOW, True)
    assert h.coherence_lost and ext == (ALERT + QUAR) >> 1 and h.losses == 1
    assert h.beat(50, 0, 0, COLL, True) == 0 and not h.coherence_lost    # steady again
    for _ in range(62 + 2500):
        h.beat(50, 0, 0, BELOW, True)
    assert h.relearn and not h.armed             # 10 s lost: learn the lag again
    h.relearn = False
    assert not h.relearn


def test_bad_times_refused():
    for kw in ({"fault_alert_s": 0}, {"fault_alert_s": 3.0, "fault_quarantine_s": 2.0},
               {"loss_grace_s": 20.0, "loss_hold_s": 10.0}):
        try:
            SignalHealth(0.004, ALERT, QUAR, **kw)
        except ValueError:
            continue
        raise AssertionError(kw)


def test_zero_alloc():
    if not MPY:
        return
    from device import health as H
    h = _h()
    gc.collect()
    a0 = gc.mem_alloc()
    for i in range(200):
        H.beat(h.st, 50, i & 1, 0, COLL if i & 2 else BELOW, 1)
    assert gc.mem_alloc() - a0 == 0 and h.st[EVENTS] >= 0
