"""Telemetry history in memory (host/memory/telemetry.py): sampled TELEMETRY rows, every-record
mode, HEARTBEAT lateness rows, and `becomingone memory query --table telemetry`."""
import json

import numpy as np

from becomingone.cli import main
from becomingone.memory.store import Memory
from becomingone.memory.telemetry import TelemetryHistory, telemetry_row, telemetry_rows_from_beats
from becomingone.wire.telemetry import BEAT_DTYPE
from shared import protocol as P
from tests.test_coordinator import HELLO, FakeDevice, make_coord, stop, tel, wait

HB = {"beats": 200, "late_p50_us": 12, "late_p99_us": 480, "late_max_us": 900, "heap_free": 100000,
      "witness_queue": 0, "rx_ok": 3, "rx_crc": 0, "rx_cobs": 0, "rx_auth": 0, "rx_replay": 0,
      "rx_other": 0, "tx_dropped": 0, "samples_lost": 0}


def _rec(beat, decision=0, late=3):
    r = tel(beat)
    r.update(lateness_us=late, decision_state=decision, pid_error=-16384, coherence=32768)
    return r


def test_row_scaling_single_and_batch_agree():
    r = _rec(7, decision=P.DECISION_QUARANTINE | 0x80 | 0x40, late=250)
    row = telemetry_row(10.0, 17, 3, r)
    assert row == (10.0, 17, 3, 7, 250, 0.5, -0.5, 0.5, 100 / 65536, 22938 / 65536, 4, 3,
                   -800 / 256, 400 / 256, 480 / 256, 2, None)    # device_t: no time fit yet
    assert telemetry_row(10.0, 17, 3, r, 1234.5)[-1] == 1234.5
    b = np.zeros(2, dtype=BEAT_DTYPE)
    for k, v in r.items():
        b[k] = v
    b["device_id"], b["boot_id"] = 17, 3
    assert telemetry_rows_from_beats(10.0, b) == [row, row]


def test_sampled_rows_and_heartbeats_reach_memory(tmp_path):
    c, th, addr = make_coord(tmp_path, **{"memory.telemetry_interval": 0.05})
    try:
        dev = FakeDevice(addr)
        dev.send(P.HELLO, HELLO)
        for b in range(1, 31):
            dev.send(P.TELEMETRY, _rec(b, decision=P.DECISION_ALERT if b > 20 else 0, late=b))
        assert wait(lambda: c.counters["beats"] >= 30)
        dev.send(P.HEARTBEAT, HB)
        assert wait(lambda: c.call(lambda: c.tel_history.rows) >= 1 and
                    c.call(lambda: len(c.tel_history._hb_seen)) == 1)
    finally:
        stop(c, th)
    mem = Memory.open_readonly(str(tmp_path / "data" / "memory.sqlite"))
    try:
        rows = mem.query("telemetry", device_id=17)
        hb = mem.query("heartbeats", device_id=17)
    finally:
        mem.close()
    # sampled: at most one row per tick, never more rows than records, the last record sampled
    assert 1 <= len(rows) <= 30
    assert rows[-1]["beat"] == 30 and rows[-1]["decision"] == P.DECISION_ALERT
    assert rows[-1]["lateness_us"] == 30 and rows[-1]["coherence"] == 0.5
    assert rows[-1]["pid_error"] == -0.5 and rows[-1]["boot_id"] == 0x2A5C
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
    assert len(hb) == 1 and (hb[0]["late_p50_us"], hb[0]["late_p99_us"], hb[0]["late_max_us"]) == (12, 480, 900)


def test_interval_zero_stores_every_record_and_cli_query(tmp_path, capsys):
    c, th, addr = make_coord(tmp_path, **{"memory.telemetry_interval": 0})
    try:
        dev = FakeDevice(addr)
        dev.send(P.HELLO, HELLO)
        for b in range(1, 26):
            dev.send(P.TELEMETRY, _rec(b))
        dev.send(P.TELEMETRY, {"records": [_rec(26), _rec(27), _rec(28)]}, batch=True)
        assert wait(lambda: c.counters["beats"] >= 28)
        assert wait(lambda: c.call(lambda: c.tel_history.rows) >= 28)
    finally:
        stop(c, th)
    data = str(tmp_path / "data")
    assert main(["memory", "query", "--data", data, "--table", "telemetry", "--device", "17",
                 "--limit", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["table"] == "telemetry"
    assert [r["beat"] for r in out["rows"]] == list(range(1, 29))
    assert main(["memory", "query", "--data", data, "--table", "telemetry", "--device", "18",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == []
    assert main(["memory", "query", "--data", data, "--table", "telemetry", "--since=-2h",
                 "--until=-1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == []


def test_disabled_and_prune(tmp_path):
    c, th, addr = make_coord(tmp_path, **{"memory.telemetry": False})
    try:
        assert c.tel_history is None
    finally:
        stop(c, th)
    mem = Memory(str(tmp_path / "m.sqlite"), max_rows=1000)
    h = TelemetryHistory(mem, interval=0)
    b = np.zeros(1500, dtype=BEAT_DTYPE)
    b["device_id"], b["beat"] = 1, np.arange(1500)
    h.beats(b, now=100.0)
    mem.flush()
    mem.prune()
    assert mem.counts()["telemetry"] == 1000
    assert mem.query("telemetry", limit=1)[0]["beat"] == 1499
    mem.close()
