"""`becomingone evaluate DATASET_DIR --json` on a tiny synthetic dataset in the index.json format
(a healthy Gaussian machine and an impacting one, at 12 kHz and at 48 kHz) through the real
firmware; and, when the shared CWRU subset is present, a few of its records."""
import json
import os

import numpy as np
import pytest

from becomingone.cli import main
from becomingone.evaluate.dataset import write_index

pytest.importorskip("scipy")

CWRU = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "..",
                    "shared", "data", "cwru")
CWRU = os.environ.get("BECOMINGONE_CWRU", "/work/shared/data/cwru" if os.path.isdir(
    "/work/shared/data/cwru") else CWRU)


def machine(fs, seconds, impacts_g=0.0, seed=0):
    """Acceleration in g: 0.05 g rms broadband noise, a 29.95 Hz running speed of 0.3 g and,
    optionally, bearing-like impacts (a 3 kHz ring decaying in ~0.5 ms) at 107.4 Hz."""
    rng = np.random.default_rng(seed)
    n = int(fs * seconds)
    t = np.arange(n) / fs
    x = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 29.95 * t)
    if impacts_g:
        k = np.arange(int(0.002 * fs))
        ring = impacts_g * np.exp(-k / (0.0005 * fs)) * np.sin(2 * np.pi * 3000 * k / fs)
        for s in (np.arange(0, seconds, 1 / 107.4) * fs).astype(int):
            e = min(n, s + ring.shape[0])
            x[s:e] += ring[:e - s]
    return x


def make_dataset(d):
    d.mkdir()
    scale = 0.0005            # g per count of the int16 records
    recs, der = [], []
    for rec, fs, imp, cond in ((1, 12000, 0.0, "normal"), (2, 12000, 1.5, "outer_race"),
                               (4, 48000, 1.5, "outer_race")):
        x = machine(fs, 3.0, imp, seed=rec)
        f = "r%d_DE.npy" % rec
        np.save(d / f, np.round(x / scale).astype(np.int16))
        recs.append({"record": rec, "condition": cond, "sample_rate_hz": fs, "load_hp": 0,
                     "fault_diameter_in": 0.007 if imp else 0.0,
                     "channels": {"DE": {"file": f, "scale_g_per_count": scale}}})
    # the 48 kHz healthy machine as a derived float32 file in g
    np.save(d / "r3_DE.npy", machine(48000, 3.0, 0.0, seed=3).astype(np.float32))
    der.append({"record": 3, "derived": True, "condition": "normal", "sample_rate_hz": 48000,
                "load_hp": 0, "files": {"DE": "r3_DE.npy"}})
    write_index(str(d), recs, der)
    return d


def test_evaluate_json_on_a_synthetic_dataset(tmp_path, capsys):
    d = make_dataset(tmp_path / "ds")
    assert main(["evaluate", str(d), "--json", "--runtime", "cpython"]) == 0
    res = json.loads(capsys.readouterr().out)
    recs = {r["record"]: r for r in res["records"]}
    assert sorted(recs) == [1, 2, 3, 4]
    for r in recs.values():
        for k in ("record", "condition", "beats", "alert_beats", "quarantine_beats",
                  "first_alert_s", "first_quarantine_s", "threat", "decisions"):
            assert k in r, k
        assert 700 <= r["beats"] <= 720            # 3 s at 4.21 ms
    s = res["summary"]
    for k in ("auc_threat", "baselines", "healthy_quarantine_beats", "detected"):
        assert k in s, k
    assert set(s["baselines"]) == {"rms", "kurtosis", "crest", "envelope_band"}
    assert all("auc" in v for v in s["baselines"].values())
    # the impacting machine is detected at both rates, the healthy one never quarantined
    assert s["detected"]["outer_race"] == 1.0
    assert recs[2]["first_alert_s"] < 2.0 and recs[4]["first_alert_s"] < 2.0
    assert s["healthy_quarantine_beats"] == 0 and s["detected"]["normal"] == 0.0
    assert s["auc_threat"] >= 0.95 and s["baselines"]["kurtosis"]["auc"] >= 0.95
    assert recs[3]["derived"] and "decimated 48000 Hz -> 12000 Hz" in recs[3]["resampled"]
    assert recs[1]["clipped_samples"] == 0


@pytest.mark.skipif(not os.path.isfile(os.path.join(CWRU, "index.json")),
                    reason="the shared CWRU subset is not here (../shared/data/cwru)")
def test_cwru_records_meet_the_targets(capsys):
    """Healthy 97 (derived), inner race 105, outer race 130 and the 0.014 in ball 185 through the
    firmware (MicroPython): the issue's targets on these records."""
    assert main(["evaluate", CWRU, "--json", "--records", "97,105,130,185"]) == 0
    res = json.loads(capsys.readouterr().out)
    s = res["summary"]
    assert s["healthy_quarantine_beats"] == 0 and s["healthy_alert_beats"] == 0
    assert s["auc_threat"] >= 0.95
    best = s["best_baseline"]["auc"]
    assert s["auc_threat"] >= best - 0.02
    recs = {r["record"]: r for r in res["records"]}
    assert recs[105]["first_alert_s"] < 2.0 and recs[130]["first_alert_s"] < 2.0


def test_evaluate_with_a_model_file_sent_as_a_model_frame(tmp_path, capsys):
    """--model FILE reaches the firmware as a MODEL frame before the first beat: a model that
    never raises the threat leaves even the impacting machine at NOOP."""
    d = make_dataset(tmp_path / "ds")
    mf = tmp_path / "m.json"
    mf.write_text(json.dumps({"bias": -20.0, "w_level": 0.0, "w_kurt": 0.0, "w_crest": 0.0,
                              "w_anoms": 0.0}))
    assert main(["evaluate", str(d), "--json", "--runtime", "cpython", "--records", "1,2",
                 "--model", str(mf)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"].startswith("MODEL frame (-20.0")
    assert [r["alert_beats"] + r["quarantine_beats"] for r in res["records"]] == [0, 0]
    assert all(r["threat"]["max"] == 0.0 for r in res["records"])
    mf.write_text("{}")
    assert main(["evaluate", str(d), "--runtime", "cpython", "--model", str(mf)]) == 2
    assert "needs bias" in capsys.readouterr().err
