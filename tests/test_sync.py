"""Sync layer (SPEC 4.3): delta_phase, T_sync, coherence, edge-triggered collapse with hysteresis,
the Master-fed evaluation, and the T_global helper."""
import cmath

import numpy as np
import pytest

from becomingone.config import load_config
from becomingone.core.master import Master
from becomingone.core.sync import SyncLayer, mesh_weights, sync_from_master, t_global


def test_formulas():
    s = SyncLayer()
    r = s.update(1, 0.9 + 0j, 0.0 + 0.7j, t=5.0)
    assert r["delta_phase"] == pytest.approx(0.2)
    assert r["T_sync"] == pytest.approx(complex(0.45, 0.35))
    assert r["C_sync"] == pytest.approx(0.45 ** 2 + 0.35 ** 2)
    assert r["coherent"] is False and r["collapsed"] is False
    r = s.update(1, 0.95 + 0j, 0.0 + 0.93j)
    assert r["coherent"] is True and r["collapsed"] is False     # aligned magnitudes, not phases


def test_edge_triggered_collapse_with_hysteresis():
    events, ends = [], []
    s = SyncLayer(coherence_threshold=0.95, hysteresis=0.02, on_collapse=events.append,
                  on_release=ends.append)
    seq = [0.5, 0.96, 0.99, 0.94, 0.931, 0.96, 0.92, 0.97, 0.97]
    # collapse starts at 0.96; 0.94 and 0.931 stay inside (>= 0.93); 0.92 ends it; 0.97 re-enters
    for k, c in enumerate(seq):
        v = cmath.rect(np.sqrt(c), 0.3)
        s.update(7, v, v, t=float(k), boot_id=3, info={"master_window": 10.0})
    assert [e["t"] for e in events] == [1.0, 7.0]
    assert [e["t"] for e in ends] == [6.0]
    e = events[0]
    assert e["kind"] == "collapse" and e["device_id"] == 7 and e["boot_id"] == 3
    assert e["C_sync"] == pytest.approx(0.96) and e["master_window"] == 10.0
    assert s.collapses == 2 and s.releases == 1
    assert s.state(7)["collapsed"] is True and s.state(7)["since"] == 7.0
    s.forget(7)
    s.update(7, v, v, t=9.0)
    assert len(events) == 3                                   # a new stream re-enters


def test_vectorised_many_devices_independent():
    got = []
    s = SyncLayer(on_collapse=got.append)
    ids = np.arange(1000)
    mags = np.linspace(0.0, 1.0, 1000)
    r = s.update_many(ids, mags + 0j, mags + 0j, t=1.0)
    assert r["entered"].sum() == (mags ** 2 >= 0.95).sum() == len(got)
    r = s.update_many(ids, mags + 0j, mags + 0j, t=2.0)
    assert r["entered"].sum() == 0 and r["collapsed"].sum() == len(got)


def test_sync_from_master_uses_its_windows():
    cfg = load_config(overrides={"master.windows": [1, 10], "master.tau_max": 10})
    m = Master.from_config(cfg)
    events = []
    s = SyncLayer.from_config(cfg, on_collapse=events.append)
    i = m.open_stream(5, 9, 1000, 4210)
    j = m.open_stream(6, 9, 1000, 4210)
    n = 3000
    # device 5: perfectly coherent partials (T = E), device 6: phase rotating every beat
    ph = np.exp(1j * np.arange(n) * 2.0)
    m.ingest_batch(np.full(n, i), np.arange(n), np.full(n, 100), np.zeros(n),
                   np.full(n, 100), np.full(n, 100), np.full(n, 4))
    m.ingest_batch(np.full(n, j), np.arange(n), (ph.real * 100).astype(np.int64),
                   (ph.imag * 100).astype(np.int64), np.full(n, 100), np.full(n, 100),
                   np.full(n, 4))
    r = sync_from_master(m, s, cfg.emissary.tau_max, cfg.sync.master_window, t=1.0,
                         emissary_c_device={5: 1.0})
    assert list(r["device_id"]) == [5, 6]
    assert r["collapsed"].tolist() == [True, False]
    assert len(events) == 1 and events[0]["device_id"] == 5 and events[0]["boot_id"] == 9
    assert events[0]["emissary_c_device"] == 1.0 and events[0]["master_coverage"] == 1.0
    assert r["C_sync"][0] == pytest.approx(1.0)


def test_t_global_and_weights():
    assert t_global([1 + 0j, 1j]) == pytest.approx(0.5 + 0.5j)
    w = mesh_weights([3, 1])
    assert w.sum() == pytest.approx(1.0) and list(w) == [0.75, 0.25]
    assert t_global([1 + 0j, 1j], w) == pytest.approx(0.75 + 0.25j)
    assert list(mesh_weights([0, 0])) == [0.5, 0.5]
    assert list(mesh_weights(n=4)) == [0.25] * 4
    with pytest.raises(ValueError, match="sum to 1"):
        t_global([1, 2], [0.5, 0.6])
    with pytest.raises(ValueError):
        t_global([], None)
    with pytest.raises(ValueError):
        mesh_weights([-1, 2])
    with pytest.raises(ValueError):
        SyncLayer(coherence_threshold=0.5, hysteresis=0.6)


def test_windows_that_do_not_exist_are_not_evaluated_and_end_a_collapse():
    cfg = load_config(overrides={"master.windows": [1, 10], "master.tau_max": 10})
    m = Master.from_config(cfg)
    events, ends = [], []
    s = SyncLayer.from_config(cfg, on_collapse=events.append, on_release=ends.append)
    i = m.open_stream(5, 9, 1000, 4210)

    def feed(a, b, n_samples=4):
        k = b - a
        m.ingest_batch(np.full(k, i), np.arange(a, b), np.full(k, 100), np.zeros(k),
                       np.full(k, 100), np.full(k, 100), np.full(k, n_samples))
    # 2 s of perfectly coherent beats: the 1 s window exists, the 10 s one is 19 % full
    feed(0, 500)
    r = sync_from_master(m, s, 1.0, 10.0, t=1.0)
    assert r["ready"].tolist() == [False] and not events
    st = s.state(5)
    assert st["evaluated"] is False and st["C_sync"] is None and st["collapsed"] is False
    assert st["master_fill"] == pytest.approx(0.2, abs=0.01) and st["emissary_fill"] >= 0.9
    # 90 % of 10 s held (device time = 4 samples a beat at 1 kHz): evaluated, collapses
    feed(500, 2240)
    r = sync_from_master(m, s, 1.0, 10.0, t=2.0)
    assert r["ready"].tolist() == [False]                     # 2240 x 4 ms = 8.96 s held
    feed(2240, 2260)
    r = sync_from_master(m, s, 1.0, 10.0, t=3.0)
    assert r["ready"].tolist() == [True] and len(events) == 1
    assert events[0]["master_fill"] >= 0.9
    # the sensor goes dead (beats without samples): the windows empty, the collapse ends
    feed(2260, 2560, n_samples=0)
    r = sync_from_master(m, s, 1.0, 10.0, t=4.0)
    assert r["ready"].tolist() == [False] and len(ends) == 1
    assert ends[0]["reason"] == "window_not_filled" and ends[0]["C_sync"] is None
    assert s.state(5)["collapsed"] is False


def test_cell_value_for_the_mesh_is_comparable_across_streams():
    """Each stream's phase counts from its own start: the cell's value is the mean |T_sync| of
    its evaluated devices, so two collapsed devices at arbitrary phases give ~0.98, not ~0."""
    s = SyncLayer()
    s.update(1, cmath.rect(0.98, 0.0), cmath.rect(0.98, 0.0), t=100.0)
    s.update(2, cmath.rect(0.98, 3.1), cmath.rect(0.98, 3.1), t=100.0)
    s.update(3, 0.1 + 0j, 0.1 + 0j, t=100.0, ready=False)     # not evaluated: not counted
    s.update(4, 0.5 + 0j, 0.5 + 0j, t=10.0)                   # stale
    v, n = s.recent_mean(101.0, 5.0)
    assert n == 2 and v == pytest.approx(0.98 + 0j)
    assert abs((cmath.rect(0.98, 0.0) + cmath.rect(0.98, 3.1)) / 2) < 0.05   # what it was
    assert s.recent_mean(1000.0, 5.0) == (0j, 0)
