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
    n = len(sent)
    assert dc2.resync(7) == {}                 # the refused change is never sent again
    assert dc2.counters["not_resent"] == 1
    assert dc2.resync(99) is None


def test_damaged_history_file(tmp_path):
    p = tmp_path / "devconfig.json"
    p.write_text('{"devices": {"1": {"events": 3}}}')
    with pytest.raises(UserError, match="damaged"):
        DeviceConfigs(DEFAULTS, str(p))


# ---------------------------------------------------------------- whole-config checks


from becomingone.devices.config import DEVICE_DEFAULTS, device_defaults, hello_limits  # noqa: E402

HELLO = {"fs_hz": 1000, "spb_max": 32, "period_min_us": 500}


def _full(tmp_path, hello=HELLO, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    sent, ledger = [], []
    dc = DeviceConfigs(device_defaults(), str(tmp_path / "devconfig.json"),
                       lambda d, c, v: sent.append((d, dict(c), v)),
                       lambda k, d: ledger.append((k, d)),
                       limits=lambda d: hello_limits(hello), **kw)
    return dc, sent, ledger


@pytest.mark.parametrize("change, key", [
    ({"alert_threshold": 0.9}, "alert_threshold"),           # above quarantine 0.85
    ({"quarantine_threshold": 0.5}, "quarantine_threshold"),  # below alert 0.6
    ({"pid_kd": 20}, "pid_kd"),                              # Kd/T = 4750 >= 4096 at 4.21 ms
    ({"pulse_k": -2.0, "pulse_p": -3.0}, "pulse_k"),         # k*P = 6 > 1, but k < 0
    ({"pulse_p": 0.2}, "pulse_p"),                           # k*P = 0.8
    ({"period_us": 100000}, "period_us"),                    # 100 samples a beat > 31
    ({"act_kd": 50}, "act_kd"),
    ({"telemetry_every": 0}, "telemetry_every"),
    ({"setpoint": 1.5}, "setpoint"),
])
def test_config_refused_before_it_is_stored(tmp_path, change, key):
    """The CONFIGs that crash-looped the landed firmware are refused on the host, the key
    named, nothing stored, nothing sent (the device checks again with the same rules)."""
    dc, sent, ledger = _full(tmp_path)
    with pytest.raises(UserError, match=r"config %s = .* refused" % key):
        dc.apply(3, change)
    assert dc.history(3).latest == 0 and sent == [] and ledger == []


def test_config_checked_as_a_whole_and_against_the_board(tmp_path):
    dc, sent, ledger = _full(tmp_path)
    # alert and quarantine moved together: right as a whole
    dc.apply(3, {"alert_threshold": 0.9, "quarantine_threshold": 0.95})
    assert sent[-1][1] == {"alert_threshold": 0.9, "quarantine_threshold": 0.95}
    dc.apply(3, {"period_us": 31000})                        # (32 - 1) samples at 1 kHz
    # a board at 10 kHz: the default 4.21 ms beat already takes 42 samples
    dc10, _, _ = _full(tmp_path / "b", hello={"fs_hz": 10000, "spb_max": 32,
                                               "period_min_us": 500})
    with pytest.raises(UserError, match="period_us .*<= 3100 us"):
        dc10.apply(4, {"period_us": 4000})
    dc10.apply(4, {"period_us": 3000})
    # no HELLO yet: the board-independent rules only
    dcn, _, _ = _full(tmp_path / "c", hello=None)
    dcn.apply(5, {"period_us": 100000})
    with pytest.raises(UserError, match="alert_threshold"):
        dcn.apply(5, {"alert_threshold": 0.9})
    # undo / goto are checked too: back to the default 4.21 ms beat, which this board cannot take
    with pytest.raises(UserError, match="period_us"):
        dc10.goto(4, 0)
    with pytest.raises(UserError, match="period_us"):
        dc10.undo(4)
    assert dc10.history(4).position == 1 and dc10.history(4).state()["period_us"] == 3000


def test_refused_config_is_never_resent(tmp_path):
    """A device refused a CONFIG (a history from an older host, a board with other limits):
    the event leaves the effective state, and neither a retry nor the resync at its next HELLO
    sends it again (the landed host resent it at every HELLO: 133 reboots in 60 s)."""
    dc, sent, ledger = _full(tmp_path, hello=None)
    dc.apply(3, {"telemetry_every": 4})
    assert dc.on_ack(3, sent[-1][2], 0)
    dc.apply(3, {"period_us": 100000})          # fine for the host without the board's limits
    v = sent[-1][2]
    assert dc.on_ack(3, v, status=3, key="period_us")      # the device: BAD_VALUE, key named
    st = dc.history(3).state()
    assert st["period_us"] == DEVICE_DEFAULTS["period_us"] and st["telemetry_every"] == 4
    assert ledger[-1][1]["status"] == "refused" and ledger[-1][1]["key"] == "period_us"
    n = len(sent)
    dc.tick(1e9)
    assert dc.resync(3) == {"telemetry_every": 4}           # the good part only
    assert sent[-1][1] == {"telemetry_every": 4} and len(sent) == n + 1
    # the whole state refused at a resync (another board now) is not sent at the next HELLO
    assert dc.on_ack(3, sent[-1][2], status=2)
    assert dc.resync(3) == {} and len(sent) == n + 1
    # persisted: a restarted host does not resend either
    dc2 = DeviceConfigs(device_defaults(), str(tmp_path / "devconfig.json"),
                        lambda d, c, v: sent.append((d, dict(c), v)))
    assert dc2.history(3).state()["period_us"] == DEVICE_DEFAULTS["period_us"]
    assert dc2.resync(3) == {} and len(sent) == n + 1
    # a new change is sent again (with the state it leads to)
    dc2.apply(3, {"pow_bits": 14})
    assert len(sent) == n + 2


def test_config_pending_when_the_device_comes_back_from_a_crash_is_refused(tmp_path):
    """Whatever the device did with a CONFIG (a firmware bug, the heap), if it comes back from a
    crash or a watchdog reset while that CONFIG waited for its ACK, the host takes it as refused
    and does not send it at that HELLO or after: no crash loop (coordinator.on_hello)."""
    from shared import protocol as P
    dc, sent, ledger = _full(tmp_path, hello=None)
    dc.apply(3, {"telemetry_every": 4})
    assert dc.on_reset(3, P.RESET_CRASH)
    assert ledger[-1][1]["status"] == "refused" and ledger[-1][1]["key"] == "reset:crash"
    assert dc.history(3).state()["telemetry_every"] == DEVICE_DEFAULTS["telemetry_every"]
    n = len(sent)
    assert dc.resync(3) == {} and len(sent) == n
    assert not dc.on_reset(3, P.RESET_WATCHDOG)          # nothing pending: nothing to do
