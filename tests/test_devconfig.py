import pytest

from becomingone.devices.config import ConfigHistory, DeviceConfigs
from becomingone.errors import UserError

DEFAULTS = {"telemetry_every": 1, "pow_bits": 16, "omega": 2.0}


def test_history_eq29_undo_redo_goto():
    h = ConfigHistory(DEFAULTS)
    assert h.apply({"pow_bits": 18}) == {"pow_bits": 18}
    assert h.apply({"pow_bits": 20, "omega": 3.0}) == {"pow_bits": 20, "omega": 3.0}
    assert h.apply({"telemetry_every": 4}) == {"telemetry_every": 4}
    assert h.apply({"telemetry_every": 4}) == {}            # no-op: no event
    assert h.latest == 3
    assert h.undo() == {"telemetry_every": 1}
    assert h.undo() == {"pow_bits": 18, "omega": 2.0}
    assert h.state() == {"telemetry_every": 1, "pow_bits": 18, "omega": 2.0}
    assert h.redo() == {"pow_bits": 20, "omega": 3.0}
    assert h.goto(0) == {"pow_bits": 16, "omega": 2.0}
    assert h.state() == DEFAULTS
    assert h.goto(3) == {"pow_bits": 20, "omega": 3.0, "telemetry_every": 4}
    h.goto(1)
    h.apply({"omega": 5.0})                                 # drops the redo tail
    assert h.latest == 2 and h.state()["omega"] == 5.0 and h.state()["pow_bits"] == 18
    with pytest.raises(UserError, match="nothing to redo"):
        h.redo()


def test_history_errors():
    h = ConfigHistory(DEFAULTS)
    with pytest.raises(UserError, match="nothing to undo"):
        h.undo()
    with pytest.raises(UserError, match="unknown config key.*allowed: omega, pow_bits"):
        h.apply({"bogus": 1})
    with pytest.raises(UserError, match="must be an integer"):
        h.apply({"pow_bits": 1.5})
    with pytest.raises(UserError, match="must be a number"):
        h.apply({"omega": "fast"})
    with pytest.raises(UserError, match="allowed: 0..0"):
        h.goto(4)


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_delivery_retry_ack_and_ledger(tmp_path):
    sent, ledger, clock = [], [], Clock()

    def send(dev, changes, cfg_version):
        sent.append((dev, dict(changes), cfg_version))

    path = str(tmp_path / "devconfig.json")
    dc = DeviceConfigs(DEFAULTS, path, send, lambda k, d: ledger.append((k, d)),
                       retry_s=0.5, timeout_s=3.0, clock=clock)
    r = dc.apply(7, {"pow_bits": 20})
    assert r["version"] == 1 and sent == [(7, {"pow_bits": 20}, 1)]
    clock.t = 0.2
    dc.tick()
    assert len(sent) == 1
    clock.t = 0.6
    dc.tick()                                   # no ACK yet: resent
    assert len(sent) == 2 and dc.counters["retries"] == 1
    assert sent[1] == (7, {"pow_bits": 20}, 1)  # a retry keeps its config_version
    assert not dc.on_ack(7, 0)                 # not the pending version
    assert dc.on_ack(7, 1)
    assert ledger == [("config", {"target": "device:7", "device": 7, "op": "apply",
                                  "version": 1, "change": {"pow_bits": 20}, "status": "acked",
                                  "attempts": 2, "config_version": 1})]
    dc.undo(7)
    clock.t = 10.0
    dc.tick()
    assert ledger[-1][1]["status"] == "timeout" and ledger[-1][1]["op"] == "undo"
    # persisted: a new instance sees the same history
    dc2 = DeviceConfigs(DEFAULTS, path)
    assert dc2.history(7).position == 0 and dc2.history(7).latest == 1
    dc2.goto(7, 1)
    assert dc2.pending[7]["seq"] == 3          # config_version keeps growing across restarts
    assert dc2.on_ack(7, 3, status=3)          # BAD_VALUE: refused, recorded
    assert dc2.resync(7) == {"pow_bits": 20}
    assert dc2.resync(99) is None


def test_damaged_history_file(tmp_path):
    p = tmp_path / "devconfig.json"
    p.write_text('{"devices": {"1": {"events": 3}}}')
    with pytest.raises(UserError, match="damaged"):
        DeviceConfigs(DEFAULTS, str(p))
