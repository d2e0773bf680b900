"""Witnessing layers: each on/off by config, intervals, macro always reaches the ledger callback,
meta carries the host's health and the witnessing's own counters, a full integration cycle."""
import numpy as np
import pytest

from becomingone.config import load_config
from becomingone.core.master import Master
from becomingone.memory.store import Memory
from becomingone.core.sync import SyncLayer
from becomingone.core.witnessing import Witnessing


def feed(m, dev, n, coherent=True, start=0):
    i = m.index_of(dev)
    re = np.full(n, 100) if coherent else (np.cos(np.arange(n) * 2.0) * 100).astype(np.int64)
    im = np.zeros(n) if coherent else (np.sin(np.arange(n) * 2.0) * 100).astype(np.int64)
    m.ingest_batch(i, np.arange(start, start + n), re, im, np.full(n, 100), np.full(n, 100), np.full(n, 4))


def setup(tmp_path, **over):
    o = {"data_dir": str(tmp_path), "master.windows": [1, 10], "master.tau_max": 10}
    o.update(over)
    cfg = load_config(overrides=o)
    mem = Memory.from_config(cfg)
    ledger = []
    w = Witnessing.from_config(cfg, memory=mem, on_macro=ledger.append)
    sync = SyncLayer.from_config(cfg, on_collapse=w.macro)
    m = Master.from_config(cfg)
    return cfg, mem, ledger, w, sync, m


def test_full_cycle_collapse_reaches_ledger_and_memory(tmp_path):
    cfg, mem, ledger, w, sync, m = setup(tmp_path)
    m.open_stream(1, 10, 1000, 4210)
    m.open_stream(2, 10, 1000, 4210)
    feed(m, 1, 3000, coherent=True)
    feed(m, 2, 3000, coherent=False)
    out = w.observe(m, sync, t=100.0, emissary_s=cfg.emissary.tau_max, master_s=cfg.sync.master_window)
    assert out == dict(devices=2, meso_master=2, meso_emissary=2, snapshots=2, collapsed=1)
    assert len(ledger) == 1 and ledger[0]["device_id"] == 1 and ledger[0]["kind"] == "collapse"
    macro = mem.query("witness_log", layer="macro")
    assert len(macro) == 1 and macro[0]["device_id"] == 1 and macro[0]["data"]["boot_id"] == 10
    # same state again: no new collapse (edge-triggered); intervals not due yet
    out = w.observe(m, sync, t=100.05, master_s=10.0)
    assert out["meso_master"] == 0 and out["snapshots"] == 0 and out["meso_emissary"] == 2
    assert len(ledger) == 1
    out = w.observe(m, sync, t=100.2, master_s=10.0)
    assert out["meso_master"] == 2 and out["snapshots"] == 0
    sync_rows = mem.query("coherence_history", device_id=1, kind="sync")
    assert sync_rows[-1]["flags"] == 3 and sync_rows[-1]["c"] == pytest.approx(1.0)   # coherent|collapsed
    assert sync_rows[-1]["T_hat"] == pytest.approx([1.0, 0.0]) and sync_rows[-1]["delta_phase"] < 1e-9
    em = mem.query("coherence_history", device_id=2, kind="emissary")
    assert em[-1]["window"] == 1.0 and em[-1]["T_hat"] is not None and em[-1]["device_c"] is None
    st = mem.reconstruct(1, 100.3)
    assert st["snapshot_t"] == 100.0 and {c["kind"] for c in st["coherence"]} == {"master", "emissary", "sync"}
    # a new boot id: a new stream, due at once, and it can collapse again
    m.open_stream(1, 11, 1000, 4210)
    sync.forget(1)
    feed(m, 1, 3000)
    out = w.observe(m, sync, t=100.3, master_s=10.0)
    assert out["snapshots"] == 1 and len(ledger) == 2 and ledger[1]["boot_id"] == 11


def test_layers_toggle_but_ledger_always_gets_collapses(tmp_path):
    cfg, mem, ledger, w, sync, m = setup(tmp_path, **{"witnessing.layers": ["micro"]})
    m.open_stream(1, 1, 1000, 4210)
    feed(m, 1, 3000)
    w.observe(m, sync, t=5.0, master_s=10.0)
    assert len(ledger) == 1                                    # system of record
    assert mem.query("witness_log") == []                      # macro layer off
    assert mem.query("coherence_history") == []                # meso layer off
    assert mem.counts()["phase_snapshots"] == 2                # snapshots are memory, not witnessing
    assert w.micro("config_apply", device_id=1, version=3)["version"] == 3
    assert w.meta({"ingest_lag_ms": 1.0}) is None              # meta off
    assert w.stats()["suppressed"]["meta"] == 1
    cfg2, mem2, ledger2, w2, sync2, m2 = setup(tmp_path / "b", **{"witnessing.enabled": False})
    assert w2.micro("x") is None and not w2.on("macro")


def test_meta_health_interval_and_self_observation(tmp_path):
    cfg, mem, ledger, w, sync, m = setup(tmp_path, **{"witnessing.meta_interval": 2.0})
    r = w.meta({"ingest_lag_ms": 3.5, "lost": 2, "queues": {"inbox": 7}}, t=10.0)
    assert r["ingest_lag_ms"] == 3.5 and r["queues"] == {"inbox": 7}
    assert "records" in r["witnessing"] and "memory" in r["witnessing"]
    assert w.meta({"x": 1}, t=11.0) is None                    # not due
    assert w.meta({"x": 1}, t=12.0) is not None
    assert w.meta({"x": 1}, t=12.5, force=True) is not None
    rows = mem.query("witness_log", layer="meta")
    assert [x["t"] for x in rows] == [10.0, 12.0, 12.5]
    assert rows[0]["data"]["queues"] == {"inbox": 7}


def test_micro_records_and_unknown_layer(tmp_path):
    cfg, mem, ledger, w, sync, m = setup(tmp_path)
    w.micro("model_push", device_id=4, t=1.0, w=0.12, b=0.0)
    w.micro("decision", device_id=4, t=2.0, decision="ALERT")
    assert [r["kind"] for r in mem.query("witness_log", device_id=4)] == ["model_push", "decision"]
    with pytest.raises(ValueError, match="allowed"):
        Witnessing(layers=["nano"])


def test_emissary_interval_controls_meso_rate(tmp_path):
    cfg, mem, ledger, w, sync, m = setup(tmp_path, **{"emissary.witness_interval": 0.5,
                                                      "master.witness_interval": 1.0})
    m.open_stream(1, 1, 1000, 4210)
    feed(m, 1, 500, coherent=False)
    counts = [w.observe(m, sync, t=k * 0.1, master_s=10.0) for k in range(20)]
    assert sum(c["meso_emissary"] for c in counts) == 4       # t = 0, 0.5, 1.0, 1.5
    assert sum(c["meso_master"] for c in counts) == 2         # t = 0, 1.0


def test_integration_object_end_to_end(tmp_path):
    from becomingone.core.integration import Integration
    cfg = load_config(overrides={"data_dir": str(tmp_path), "master.windows": [1, 10],
                                 "master.tau_max": 10, "master.witness_interval": 0.5,
                                 "emissary.witness_interval": 0.5, "witnessing.meta_interval": 1.0})
    m = Master.from_config(cfg)
    ledger = []
    core = Integration(cfg, m, ledger_submit=lambda kind, data: ledger.append((kind, data)))
    m.open_stream(3, 4, 1000, 4210)
    feed(m, 3, 3000)
    core.telemetry_coherence(3, 65535)
    out = core.tick(now=50.0, health={"ingest_lag_ms": 0.4, "queues": {"inbox": 0}})
    assert out["collapsed"] == 1 and out["snapshots"] == 1
    assert ledger[0][0] == "collapse" and ledger[0][1]["device_id"] == 3
    assert ledger[0][1]["emissary_c_device"] == pytest.approx(65535 / 65536)
    assert core.tick(now=50.1) is None                        # not due
    core.micro("model_push", device_id=3, w=0.2, b=-1.0)
    core.new_stream(3)
    assert core.status()["collapses"] == 1
    core.close()
    mem = Memory.open_readonly(cfg.memory_path())
    layers = {r["layer"] for r in mem.query("witness_log")}
    assert layers == {"macro", "meta", "micro"}
    assert mem.reconstruct(3, 51.0)["windows"][0]["C"] == pytest.approx(1.0)

    def broken(kind, data):
        raise RuntimeError("disk full")
    cfg2 = load_config(overrides={"data_dir": str(tmp_path / "b"), "master.windows": [1, 10],
                                  "master.tau_max": 10})
    m2 = Master.from_config(cfg2)
    core2 = Integration(cfg2, m2, ledger_submit=broken, memory=False)
    m2.open_stream(1, 1, 1000, 4210)
    feed(m2, 1, 3000)
    core2.tick(now=1.0)
    assert core2.ledger_errors == 1
