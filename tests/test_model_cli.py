"""`becomingone model train|show|push`: anomaly counts recovered exactly from the devices'
threat values, labels from fault intervals, a fit that separates faulty from healthy history,
and clear errors."""
import json
import os

import numpy as np
import pytest

from device.arbiter import Arbiter
from becomingone.model import dataset as H
from becomingone.cli import main
from becomingone.errors import UserError
from becomingone.memory.store import Memory
from becomingone.memory.telemetry import telemetry_row


@pytest.mark.parametrize("w,b", [(0.12, 0.0), (0.3, -2.0), (0.05, 1.5)])
def test_table_is_the_devices_and_inversion_is_exact(w, b):
    arb = Arbiter(w=w, b=b)
    table = H.threat_table(w, b)
    assert table.tolist() == list(arb._table)
    a = np.arange(0, 1025)
    got, sat = H.anoms_from_threat(table[a], w, b)
    exact = ~sat
    # every non-saturated threat value maps back to the smallest count that gives it
    assert np.all(table[got] == table[a])
    assert np.all(got[exact] <= a[exact]) and np.all(table[got[exact] - 1][got[exact] > 0] < table[got[exact]][got[exact] > 0])
    if w == 0.12 and b == 0.0:
        # distinct Q16 values up to 77 anomalies; ties from there; saturated from 90
        assert np.array_equal(got[:78], a[:78]) and not sat[:90].any() and sat[90:].all()


def test_bad_model_in_effect():
    with pytest.raises(UserError, match="w > 0"):
        H.anoms_from_threat([100], 0.0, 0.0)
    with pytest.raises(UserError, match="finite"):
        H.threat_table(float("nan"), 0.0)


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
        with pytest.raises(UserError, match=msg):
            H.read_intervals(str(f))


def _history(data, t0=1.7e9, seconds=120, fault_at=60):
    """10 Hz telemetry of 3 devices; device 2 is faulty (many anomalies) from t0+fault_at."""
    os.makedirs(data, exist_ok=True)
    rng = np.random.default_rng(4)
    table = H.threat_table(0.12, 0.0)
    m = Memory(os.path.join(data, "memory.sqlite"))
    rows = []
    for k in range(seconds * 10):
        t = t0 + k / 10.0
        for dev in (1, 2, 3):
            faulty = dev == 2 and t >= t0 + fault_at
            a = int(min(1024, rng.poisson(14.0 if faulty else 3.5)))
            rec = {"beat": k, "lateness_us": 40, "coherence": 30000, "pid_error": 0,
                   "pid_output": 0, "threat": int(table[a]), "o_weight": 20000, "decision_state": 0}
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
    assert r["rows"] == 3600 and r["positives"] > 0 and r["devices"] == [1, 2, 3]
    assert r["w"] > 0 and r["auc"] > 0.95 and r["auc_holdout"] > 0.95
    # threat = 0.5 should sit between healthy (3.5) and faulty (14) anomaly counts
    assert 3.5 < -r["b"] / r["w"] < 14
    assert main(["model", "show", "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["w"] == r["w"]
    assert main(["model", "push", "--data", data]) != 0
    assert "no coordinator is running" in capsys.readouterr().err


def test_train_with_labels_file_and_errors(tmp_path, capsys):
    data = str(tmp_path / "d")
    t0 = _history(data)
    lab = tmp_path / "l.csv"
    lab.write_text("device,start,end\n2,%r,\n" % (t0 + 60))
    assert main(["model", "train", "--data", data, "--labels", str(lab), "--device", "2",
                 "--holdout", "0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["devices"] == [2] and r["auc_holdout"] is None and r["auc"] > 0.95
    # no summary.json: a clear message, not a traceback
    assert main(["model", "train", "--data", data]) != 0
    assert "run `becomingone emulate` first" in capsys.readouterr().err
    assert main(["model", "train", "--data", str(tmp_path / "nothing"), "--labels", str(lab)]) != 0
    assert "no memory database" in capsys.readouterr().err
    assert main(["model", "train", "--data", data, "--labels", str(lab), "--in-effect", "x"]) != 0
    assert "--in-effect needs W,B" in capsys.readouterr().err
    lab.write_text("device,start,end\n9,%r,\n" % t0)
    assert main(["model", "train", "--data", data, "--labels", str(lab)]) != 0
    assert "both labels" in capsys.readouterr().err
    assert main(["model", "show", "--data", str(tmp_path / "none")]) != 0
    assert "run `becomingone model train` first" in capsys.readouterr().err


def test_push_reaches_a_device_of_the_running_coordinator(tmp_path, capsys):
    from tests.test_coordinator import HELLO, FakeDevice, make_coord, stop
    from shared import protocol as P
    c, th, addr = make_coord(tmp_path)
    try:
        dev = FakeDevice(addr, device_id=33)
        dev.send(P.HELLO, HELLO)
        dev.recv(P.TIME_SYNC)
        with open(os.path.join(c.data_dir, "entropy_model.json"), "w") as f:
            json.dump({"w": 0.25, "b": -2.5, "auc": 0.99, "rows": 10, "trained_at": 0}, f)
        assert main(["model", "push", "--data", c.data_dir, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sent_to"] == [33]
        m = dev.recv(P.MODEL)
        assert m.fields["w"] == pytest.approx(0.25) and m.fields["b"] == pytest.approx(-2.5)
    finally:
        stop(c, th)
