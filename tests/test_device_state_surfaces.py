"""One decoded device state on every surface (issue 15): after a QUARANTINE (latched while the
beat's own decision is back to NOOP) and after the CLEAR, `status`, `device list`, /api/devices,
/api/devices/N, the event stream's snapshot, /metrics, the MQTT state payload and the live table
of `emulate` all say the same decision, quarantine latch and threat, in physical units."""
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from becomingone.cli import main
from becomingone.commands.devicetable import COLUMNS, device_rows, states_of
from becomingone.mqtt.bridge import state_payload
from shared import protocol as P
from tests.http_helpers import Host
from tests.test_coordinator import tel, wait

LATCHED = P.STATE_QUARANTINE_LATCHED


def _metrics(h):
    status, body, _ = h.request("/metrics", raw=True)
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _surfaces(h, capsys, data):
    """{surface: (decision, quarantined, threat)} as each surface shows device 17."""
    out = {}
    api = [d for d in h.get("/api/devices")["devices"] if d["device_id"] == 17][0]
    out["api/devices"] = (api["decision"], api["quarantined"], round(api["threat"], 4))
    one = h.get("/api/devices/17")
    out["api/devices/17"] = (one["decision"], one["quarantined"], round(one["threat"], 4))
    time.sleep(0.15)                              # past http.sse_interval: a fresh snapshot
    snap = [d for d in h.get("/api/snapshot")["devices"] if d["device_id"] == 17][0]
    out["events"] = (snap["decision"], snap["quarantined"], round(snap["threat"], 4))
    m = _metrics(h)
    dec = [dict(k[1])["decision"] for k, v in m.items()
           if k[0] == "becomingone_device_decision" and dict(k[1])["device"] == "17" and v == 1]
    assert len(dec) == 1, dec
    out["metrics"] = (dec[0], m[("becomingone_device_quarantined", (("device", "17"),))] == 1,
                      round(m[("becomingone_device_threat", (("device", "17"),))], 4))
    mq = [state_payload(x) for x in h.cell.view.device_states(timeout=5) if x["device_id"] == 17][0]
    out["mqtt"] = (mq["decision"], mq["quarantined"], round(mq["threat"], 4))
    # the CLI, through the running coordinator's control socket
    assert main(["status", "--data", data, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    row = dict(zip(COLUMNS, device_rows(states_of(st["sessions"]))[0]))
    out["status"] = (row["decision"], row["latched"] == "YES", round(float(row["threat"]), 3))
    assert main(["status", "--data", data]) == 0
    text = capsys.readouterr().out
    assert "decision" in text and row["decision"] in text
    assert main(["device", "list", "--data", data]) == 0
    text = capsys.readouterr().out
    line = [ln for ln in text.splitlines() if ln.strip().startswith("17 ")][0]
    cells = dict(zip(COLUMNS, line.split()))
    out["device list"] = (cells["decision"], cells["latched"] == "YES", round(float(cells["threat"]), 3))
    assert all(len(ln) <= 100 for ln in text.splitlines())
    return out


def _same(out):
    first = next(iter(out.values()))
    for k, v in out.items():
        assert v[0] == first[0] and v[1] == first[1], out
        assert v[2] == pytest.approx(first[2], abs=1e-3), out
    return first


def test_state_is_the_same_on_every_surface_after_quarantine_and_clear(tmp_path, capsys):
    h = Host(tmp_path)
    data = str(tmp_path / "data")
    try:
        dev = h.device(17, beats=10)
        beat = [10]

        def send(state, threat):
            beat[0] += 1
            r = tel(beat[0])
            r.update(decision_state=state, threat=threat)
            dev.send(P.TELEMETRY, r)
            b = beat[0]
            assert wait(lambda: h.c.call(lambda: h.c.sessions.get(17).last_telemetry["beat"] == b), 10)

        # QUARANTINE, then latched while the beats' own decision is NOOP again
        send(P.DECISION_QUARANTINE | LATCHED, 60000)
        send(P.DECISION_NOOP | LATCHED, 16384)
        got = _same(_surfaces(h, capsys, data))
        assert got[:2] == ("QUARANTINE", True) and got[2] == pytest.approx(0.25, abs=1e-3)
        # the operator's CLEAR; the device leaves the latch
        assert h.request("/api/devices/17/clear", method="POST", body={})[0] == 200
        assert dev.recv(P.CLEAR).fields["reason"] == P.CLEAR_OPERATOR
        send(P.DECISION_NOOP, 1000)
        got = _same(_surfaces(h, capsys, data))
        assert got[:2] == ("NOOP", False)
    finally:
        h.stop()


def test_live_table_of_emulate_has_rows_from_the_sessions_dict():
    """`_live_table` read status()["sessions"] as a list (it is a dict by device id): every
    cell showed "-"."""
    from becomingone.commands import emulate as cmd

    class Dev:
        def __init__(self, d):
            self.device_id, self.link_url = d, "udp://127.0.0.1:1"

    class Emu:
        devices = [Dev(1), Dev(2)]
        data_dir = "/tmp/x"

        def elapsed(self):
            return 3.0

        def status(self):
            r = tel(42)
            r.update(decision_state=P.DECISION_ALERT)
            return {"frames_received": 5, "sessions": {"1": {
                "device_id": 1, "boot_id": 77, "online": True, "frames": 43, "lost": 2,
                "witness": 1, "last_seen": time.time(), "last_telemetry": r,
                "hello": {"board": "emulator"}}}}
    from rich.console import Console
    con = Console(width=100, record=True)
    con.print(cmd._live_table(Emu()))
    text = con.export_text()
    row1 = [ln for ln in text.splitlines() if "emulator" in ln][0]
    assert "ALERT" in row1 and "43" in row1 and "0.002" in row1
    assert all(len(ln) <= 100 for ln in text.splitlines())
