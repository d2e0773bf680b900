"""`becomingone model train|show|push` on the features the devices send (TELEMETRY level, kurt,
crest, anoms stored in memory): labels from fault intervals, a fit that separates faulty from
healthy history with held-out AUC, MODEL frames with the feature weights, devices.model at
HELLO, and clear errors."""
import json
import os
import sqlite3

import numpy as np
import pytest

from becomingone.model import dataset as H
from becomingone.cli import main
from becomingone.memory.store import Memory
from becomingone.memory.telemetry import telemetry_row


def test_intervals_and_labels(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("device,start,end\n2,100,200\n2,300,\n5,1970-01-01T00:01:40Z,150\n")
    iv = H.read_intervals(str(f))
    assert iv[2][0] == (100.0, 200.0) and iv[2][1][1] == float("inf") and iv[5] == [(100.0, 150.0)]
    y = H.label_rows([50, 150, 250, 350, 120, 120], [2, 2, 2, 2, 5, 1], iv)
    assert y.tolist() == [0, 1, 0, 1, 1, 0]
    for text, msg in (("dev,start,end\n", "header"), ("device,start,end\nx,1,2\n", "not an integer"),
                      ("device,start,end\n1,5,4\n", "not after"), ("device,start,end\n1,yesterday,\n", "bad time")):
        f.write_text(text)
        with pytest.raises(Exception, match=msg):
            H.read_intervals(str(f))


def _history(data, t0=1.7e9, seconds=120, fault_at=60):
    """10 Hz telemetry of 3 devices with the device's features; device 2 is faulty (louder,
    impulsive: level -2.2 octaves, kurtosis 2^3) from t0+fault_at; healthy machines differ in
    level (-4.2 .. -3.4 octaves) with Gaussian kurtosis."""
    os.makedirs(data, exist_ok=True)
    rng = np.random.default_rng(4)
    m = Memory(os.path.join(data, "memory.sqlite"))
    rows = []
    base = {1: -4.2, 2: -3.8, 3: -3.4}
    for k in range(seconds * 10):
        t = t0 + k / 10.0
        for dev in (1, 2, 3):
            faulty = dev == 2 and t >= t0 + fault_at
            level = (-2.2 if faulty else base[dev]) + rng.normal(0, 0.05)
            kurt = (3.0 if faulty else 1.58) + rng.normal(0, 0.04)
            rec = {"beat": k, "lateness_us": 40, "coherence": 30000, "pid_error": 0,
                   "pid_output": 0, "threat": 100, "o_weight": 20000, "decision_state": 0,
                   "level": int(level * 256), "kurt": int(kurt * 256), "crest": 480,
                   "anoms": int(rng.poisson(40 if faulty else 0.1))}
            rows.append(telemetry_row(t, dev, 1, rec))
    m.table_rows("telemetry", rows, t0)
    m.close()
    return t0


def test_train_from_emulation_summary_show_and_push_error(tmp_path, capsys):
    data = str(tmp_path / "d")
    t0 = _history(data)
    with open(os.path.join(data, "summary.json"), "w") as f:
        json.dump({"started": t0, "duration_s": 120, "faults": {"fault": [[2, 60]]}}, f)
    assert main(["model", "train", "--data", data, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 3600 and r["positives"] == 600 and r["devices"] == [1, 2, 3]
    assert r["features"] == ["level", "kurt"] and r["w_crest"] == 0 and r["w_anoms"] == 0
    assert r["w_level"] > 0 and r["w_kurt"] > 0
    assert r["auc"] > 0.99 and r["auc_holdout"] > 0.95
    assert r["labels"] == "emulation" and "leave-one-block-out" in r["holdout"]
    assert main(["model", "show", "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["w_level"] == r["w_level"]
    assert main(["model", "show", "--data", data]) == 0
    assert "threat = sigmoid(" in capsys.readouterr().out
    assert main(["model", "push", "--data", data]) != 0
    assert "no coordinator is running" in capsys.readouterr().err


def test_train_with_labels_file_features_and_errors(tmp_path, capsys):
    data = str(tmp_path / "d")
    t0 = _history(data)
    lab = tmp_path / "l.csv"
    lab.write_text("device,start,end\n2,%r,\n" % (t0 + 60))
    assert main(["model", "train", "--data", data, "--labels", str(lab), "--device", "2",
                 "--features", "level,kurt,anoms", "--l2", "0.01", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["devices"] == [2] and r["auc"] > 0.99 and r["l2"] == 0.01
    assert r["features"] == ["level", "kurt", "anoms"] and r["w_crest"] == 0
    # no summary.json: a clear message, not a traceback
    assert main(["model", "train", "--data", data]) != 0
    assert "run `becomingone emulate` first" in capsys.readouterr().err
    assert main(["model", "train", "--data", str(tmp_path / "nothing"), "--labels", str(lab)]) != 0
    assert "no memory database" in capsys.readouterr().err
    assert main(["model", "train", "--data", data, "--labels", str(lab), "--features", "rms"]) != 0
    assert "--features 'rms'" in capsys.readouterr().err
    assert main(["model", "train", "--data", data, "--labels", str(lab), "--l2", "-1"]) != 0
    assert "--l2 must be auto or a number >= 0" in capsys.readouterr().err
    assert main(["model", "train", "--data", data, "--labels", str(lab), "--write-default",
                 str(tmp_path / "m.py")]) != 0
    assert "--write-default needs --from-dataset" in capsys.readouterr().err
    lab.write_text("device,start,end\n9,%r,\n" % t0)
    assert main(["model", "train", "--data", data, "--labels", str(lab)]) != 0
    assert "both labels" in capsys.readouterr().err
    assert main(["model", "show", "--data", str(tmp_path / "none")]) != 0
    assert "run `becomingone model train` first" in capsys.readouterr().err


def test_a_database_from_before_the_features_is_migrated_and_explained(tmp_path, capsys):
    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(str(data / "memory.sqlite"))
    # the pre-v2 telemetry table, with a row
    db.executescript("""CREATE TABLE telemetry (
      id INTEGER PRIMARY KEY, t REAL NOT NULL, device_id INTEGER NOT NULL, boot_id INTEGER,
      beat INTEGER, lateness_us INTEGER, coherence REAL, pid_error REAL, pid_output REAL,
      threat REAL, o_weight REAL, decision INTEGER, flags INTEGER);
      INSERT INTO telemetry (t, device_id, beat, threat) VALUES (1.7e9, 1, 5, 0.5);""")
    db.commit()
    db.close()
    m = Memory(str(data / "memory.sqlite"))       # opening migrates the table
    m.close()
    cols = [r[1] for r in sqlite3.connect(str(data / "memory.sqlite")).execute(
        "PRAGMA table_info(telemetry)")]
    assert {"level", "kurt", "crest", "anoms"} <= set(cols)
    lab = tmp_path / "l.csv"
    lab.write_text("device,start,end\n1,1.6e9,\n")
    assert main(["model", "train", "--data", str(data), "--labels", str(lab)]) != 0
    assert "no telemetry rows with features" in capsys.readouterr().err


def test_push_reaches_a_device_of_the_running_coordinator(tmp_path, capsys):
    from tests.test_coordinator import HELLO, FakeDevice, make_coord, stop
    from shared import protocol as P
    c, th, addr = make_coord(tmp_path)
    try:
        dev = FakeDevice(addr, device_id=33)
        dev.send(P.HELLO, HELLO)
        dev.recv(P.TIME_SYNC)
        with open(os.path.join(c.data_dir, "entropy_model.json"), "w") as f:
            json.dump({"bias": 3.2, "w_level": 3.1, "w_kurt": 2.8, "w_crest": 0.0,
                       "w_anoms": 0.0, "auc": 0.99, "n": 10}, f)
        assert main(["model", "push", "--data", c.data_dir, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sent_to"] == [33]
        m = dev.recv(P.MODEL).fields
        assert m["bias"] == pytest.approx(3.2) and m["w_level"] == pytest.approx(3.1)
        assert m["w_kurt"] == pytest.approx(2.8) and m["w_anoms"] == 0.0
    finally:
        stop(c, th)


@pytest.mark.parametrize("kind", ["seed", "trained", "shipped"])
def test_devices_model_config_is_sent_at_hello(tmp_path, kind):
    from tests.test_coordinator import HELLO, FakeDevice, make_coord, stop
    from shared import protocol as P
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "entropy_model.json", "w") as f:
        json.dump({"bias": -1.5, "w_level": 0.5, "w_kurt": 1.0, "w_crest": 0.25, "w_anoms": 0.01}, f)
    c, th, addr = make_coord(tmp_path, **{"devices.model": kind})
    try:
        dev = FakeDevice(addr, device_id=44)
        dev.send(P.HELLO, HELLO)
        dev.recv(P.TIME_SYNC)
        if kind == "shipped":
            with pytest.raises(Exception):
                dev.recv(P.MODEL, timeout=0.5)
            return
        m = dev.recv(P.MODEL).fields
        if kind == "seed":
            assert (m["bias"], m["w_level"], m["w_kurt"], m["w_crest"]) == (0, 0, 0, 0)
            assert m["w_anoms"] == pytest.approx(0.12)
        else:
            assert m["bias"] == pytest.approx(-1.5) and m["w_crest"] == pytest.approx(0.25)
    finally:
        stop(c, th)


def test_baseline_from_healthy_history(tmp_path, capsys):
    from device.model_default import MODEL
    from becomingone.model.features import device_threat_q16
    data = str(tmp_path / "d")
    _history(data, fault_at=10 ** 6)            # every device healthy for the whole history
    assert main(["model", "train", "--baseline", "--device", "3", "--data", data, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kind"] == "baseline" and r["devices"] == [3] and r["n"] == 1200
    assert (r["w_level"], r["w_kurt"]) == (round(MODEL[1], 6), round(MODEL[2], 6))
    w = (r["bias"], r["w_level"], r["w_kurt"], r["w_crest"], r["w_anoms"])
    healthy = device_threat_q16(w, int(-3.4 * 256), int(1.58 * 256), 480, 0) / 65536
    louder = device_threat_q16(w, int(-2.4 * 256), int(1.58 * 256), 480, 0) / 65536
    assert healthy < 0.12 and louder >= 0.6     # one octave above its own level: ALERT
    assert main(["model", "train", "--baseline", "--device", "3", "--data", data,
                 "--baseline-threat", "0.7"]) == 2
    assert "below ALERT" in capsys.readouterr().err
