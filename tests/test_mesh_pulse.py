"""Churn without storms (host/mesh/bridge.py): the pulse's P follows the live-cell count through
a hysteresis band, each move is one ledger entry for the cell, and a device gets CONFIG pulse_p
only when its own beat period (whole µs) changes; no ledger entry per device. The mesh service
is a stub feeding the bridge status snapshots; the devices' configuration is the real
DeviceConfigs, so what would go on the wire is counted."""
import math

import pytest

from becomingone.config import load_config
from becomingone.core.pulses import pulse_period_s
from becomingone.devices.config import DeviceConfigs, device_defaults
from becomingone.mesh.bridge import MeshBridge


class _Svc:
    def __init__(self):
        self.st = {"running": True, "periods": 0, "alive": 1, "members": {}}

    def publish(self, t, n):
        pass

    def status(self):
        return dict(self.st)

    def alerts_since(self, n):
        return [], n


class _Cell:
    """The bridge's ports: a ledger stub, submit (ledger entries), DeviceConfigs for 100 online
    devices (CONFIG frames counted as they are sent)."""

    def __init__(self, cfg):
        self.entries, self.sent = [], []
        self.dc = DeviceConfigs(device_defaults(cfg), send=lambda d, ch, seq: self.sent.append((d, ch)),
                                ledger_append=lambda kind, data: self.entries.append((kind, data)))
        self.devices = list(range(1, 101))

    def submit(self, kind, data):
        self.entries.append((kind, data))

    def configure(self, changes, note, when=None, record=True):
        n = 0
        for d in self.devices:
            state = self.dc.history(d).state()
            if any(state.get(k) != v for k, v in changes.items()) and (when is None or when(state)):
                self.dc.apply(d, changes, note=note, record=record)
                n += 1
        return n


class _Ledger:
    size = 0

    def signed_size(self):
        return 0


def _bridge(tmp_path, **over):
    o = {"data_dir": str(tmp_path), "sync.mesh_enabled": True, "sync.backend": "nats"}
    o.update(over)
    cfg = load_config(overrides=o)
    cell = _Cell(cfg)
    b = MeshBridge(cfg, str(tmp_path), _Ledger(), cell.submit, lambda *a, **k: None,
                   configure_devices=cell.configure)
    b.svc = _Svc()
    return b, cell


def _run(b, counts):
    for n in counts:
        b.svc.st["alive"] = n
        b.svc.st["periods"] += 1
        b.clock = getattr(b, "clock", 0.0) + b.interval
        b.tick(b.clock)


def _pulse_entries(cell):
    return [d for k, d in cell.entries if k == "config" and d.get("target") == "mesh:pulse"]


def test_churn_inside_the_band_moves_nothing(tmp_path):
    b, cell = _bridge(tmp_path)
    _run(b, [1000] * 3)                                   # the mesh moves P once: 5 -> 1000
    assert b.pulse["P"] == 1000.0 and len(_pulse_entries(cell)) == 1
    assert len(cell.sent) == 100                          # every device: its period 4211 -> 4001 us
    for d in cell.devices:
        cell.dc.on_ack(d, cell.dc.cfg_seq[d])
    sent = len(cell.sent)
    # a thousand cells with churn: a few die and come back every period, for 200 periods
    churn = [1000 - (k * 7919) % 9 for k in range(200)]  # 992..1000, never two periods alike
    _run(b, churn + [997, 997, 996, 996])
    assert b.pulse["P"] == 1000.0 and len(_pulse_entries(cell)) == 1 and len(cell.sent) == sent
    assert b.counters["pulse_damped"] > 0
    # a real change (band = 50 at P = 1000): one entry for the cell; the period stays 4001 us,
    # so no device is sent anything and the ledger has nothing per device
    _run(b, [940] * 3)
    rows = _pulse_entries(cell)
    assert b.pulse["P"] == 940.0 and len(rows) == 2 and rows[-1]["period_us"] == rows[-1]["period_us_before"] == 4001
    assert len(cell.sent) == sent
    assert not [d for k, d in cell.entries if k == "config" and d.get("target", "").startswith("device:")]


def test_a_period_change_is_one_config_per_device_and_no_entry_each(tmp_path):
    b, cell = _bridge(tmp_path)
    _run(b, [3, 3, 3])
    assert b.pulse["P"] == 3.0 and len(cell.sent) == 100
    for d in cell.devices:
        cell.dc.on_ack(d, cell.dc.cfg_seq[d])
    _run(b, [2, 2])                                       # band 1 at P = 3: 4364 -> 4571 us
    assert b.pulse["P"] == 2.0 and len(cell.sent) == 200
    for d in cell.devices:
        cell.dc.on_ack(d, cell.dc.cfg_seq[d])
    assert [(r["period_us_before"], r["period_us"]) for r in _pulse_entries(cell)][-1] == (4364, 4571)
    # the DeviceConfigs histories have the event (undo/redo), the ledger does not
    assert cell.dc.history(7).state()["pulse_p"] == 2.0
    assert not [d for k, d in cell.entries if k == "config" and d.get("target", "").startswith("device:")]
    # a single flap (one period) moves nothing: the count must hold for two periods
    _run(b, [3, 2, 3, 2, 2])
    assert b.pulse["P"] == 2.0 and len(cell.sent) == 200


@pytest.mark.parametrize("P", [5, 40, 200, 1000])
def test_band_and_period_resolution(tmp_path, P):
    b, _cell = _bridge(tmp_path)
    band = b.band(P)
    assert band == max(1, round(0.05 * P))
    # inside the band the period (whole µs) moves by at most 1 µs at these sizes and more cells
    lo = pulse_period_s(4.0, P - band + 1, 0.001, math.e ** 4)
    hi = pulse_period_s(4.0, P + band - 1, 0.001, math.e ** 4)
    assert abs(lo - hi) * 1e6 <= max(1.0, 300.0 / P)


def test_without_hysteresis_every_churn_is_a_move(tmp_path):
    b, cell = _bridge(tmp_path, **{"sync.mesh.pulse_hysteresis": 0.0})
    _run(b, [1000] * 3)
    _run(b, [999, 999, 1000, 1000, 998, 998])
    assert len(_pulse_entries(cell)) == 4                 # the storm the band prevents
