"""`becomingone replay` end to end (a recording into the real firmware, the coordinator
receiving its telemetry and witnesses) and `becomingone scenarios` (the decision table)."""
import json
import os

import numpy as np
import pytest

from becomingone.cli import main

pytest.importorskip("scipy")


def test_replay_a_48k_wav_into_the_firmware_with_the_coordinator(tmp_path, capsys):
    from scipy.io import wavfile
    from tests.test_evaluate_dataset import machine
    x = machine(48000, 1.5, impacts_g=1.5, seed=7)
    wav = tmp_path / "impacts.wav"
    wavfile.write(str(wav), 48000, np.round(x / 0.001).astype(np.int16))
    data = tmp_path / "replay"
    rc = main(["replay", str(wav), "--scale", "0.001", "--runtime", "cpython", "--data",
               str(data), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    r = json.loads(out.out)
    assert "decimated 48000 Hz -> 12000 Hz" in r["board"]["note"]
    assert r["recording"]["rate_hz"] == 48000 and r["board"]["samples"] == 18000
    d, h = r["device"], r["host"]
    assert 340 <= d["beats"] <= 360                    # 1.5 s at 4.21 ms
    assert d["decisions"]["QUARANTINE"] > 0 and d["quarantined"]
    assert h["devices_seen"] == 1 and h["frames_accepted"] >= d["beats"]
    assert h["telemetry_rows"] > 0 and h["first_alert_s"] is not None
    assert h["ledger_verified"] and h["witness_in_ledger"] >= 1
    assert os.path.exists(data / "summary.json") and os.path.exists(data / "ledger.sqlite")


def test_scenarios_table_json_and_docs(tmp_path, capsys):
    doc = tmp_path / "DEVICE.md"
    doc.write_text("# Device\n\ntext before\n")
    assert main(["scenarios", "--runtime", "cpython", "--beats", "1500", "--only",
                 "healthy,stuck,disturb", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = {r["scenario"]: r for r in res["scenarios"]}
    assert set(rows) == {"healthy", "stuck", "disturb"}
    for r in rows.values():
        assert abs(sum(r["percent"].values()) - 100.0) < 0.5
        assert r["check"] == "ok", r
    assert rows["healthy"]["percent"]["NOOP"] >= 95
    st = rows["stuck"]
    assert 3.0 < st["first_alert_s"] < 3.5 and st["first_quarantine_s"] <= 5.1
    assert rows["disturb"]["first_s"]["APPLY_BALANCE"] > 3.0
    from becomingone.evaluate.scenarios import BEGIN, END, write_docs
    write_docs(str(doc), "table one\n")
    write_docs(str(doc), "table two\n")
    text = doc.read_text()
    assert text.startswith("# Device\n\ntext before\n") and text.count(BEGIN) == 1
    assert "table two" in text and "table one" not in text and END in text
    assert main(["scenarios", "--only", "nope"]) == 2
    assert "unknown scenario(s) nope" in capsys.readouterr().err
