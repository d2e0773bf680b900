"""`becomingone plot` on the memory of a real short emulation (firmware under CPython, device 1's
sensor turns into an impacting machine at 2 s: ALERT, QUARANTINE), and its error cases."""
import json
import os

import numpy as np
import pytest

from becomingone.cli import main
from becomingone.memory.store import Memory
from becomingone.memory.plots import DPI, FIGSIZE, decision_runs

W, H = int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)


@pytest.fixture(scope="module")
def emu_data(tmp_path_factory):
    from becomingone.emulate.faults import parse_faults
    from becomingone.emulate.runner import Emulation
    data = str(tmp_path_factory.mktemp("emu") / "data")
    # 14 s: the Master's 10 s window exists (holds 90 % of its span) from about 10 s after the
    # device's KAIROS stream starts; the longer windows never do in this run
    emu = Emulation(devices=2, duration=14.0, runtime="cpython", faults=parse_faults("fault=1@2"),
                    data_dir=data, pow_bits=4)
    emu.run(live=None)
    return data


def _png_ok(path):
    import matplotlib.image as mpimg
    assert os.path.getsize(path) > 5000
    img = mpimg.imread(path)
    assert img.shape[:2] == (H, W)
    rgb = img[..., :3].reshape(-1, 3)
    # not blank: many distinct colours, and a real share of non-white pixels
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 20
    assert (rgb.min(axis=1) < 0.9).mean() > 0.01
    return img


def test_all_charts_written_and_decode(emu_data, tmp_path, capsys):
    out = str(tmp_path / "plots")
    assert main(["plot", "--data", emu_data, "--device", "1", "--out", out, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(res["files"]) == ["coherence", "lateness", "pid"] and res["skipped"] == {}
    for k, path in res["files"].items():
        assert path == os.path.abspath(os.path.join(out, "device-1-%s.png" % k))
        _png_ok(path)
    assert res["rows"]["telemetry"] > 10 and res["rows"]["emissary"] > 10
    # only a window that exists has C to chart (the 60 s+ windows are still filling)
    assert set(res["rows"]["master"]) == {"10.0"}
    lat = res["lateness"]
    assert lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
    assert lat["heartbeat"]["reports"] >= 1
    # plain output: one path per line
    assert main(["plot", "--data", emu_data, "--device", "2", "--out", out, "--kind", "pid",
                 "--last", "2s"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [os.path.abspath(os.path.join(out, "device-2-pid.png"))]
    _png_ok(lines[0])


def test_the_fault_shows_in_the_decisions(emu_data):
    mem = Memory.open_readonly(os.path.join(emu_data, "memory.sqlite"))
    try:
        rows = mem.query("telemetry", device_id=1, limit=100000)
    finally:
        mem.close()
    decisions = {r["decision"] for r in rows}
    assert decisions & {3, 4}, decisions          # ALERT or QUARANTINE sampled after the fault


def test_decision_runs():
    t = np.array([0.0, 1, 2, 3, 4, 5])
    d = np.array([0, 3, 3, 4, 4, 0])
    assert decision_runs(t, d) == [(0.0, 1.0, 0), (1.0, 3.0, 3), (3.0, 5.0, 4), (5.0, 5.0, 0)]
    assert decision_runs(np.empty(0), np.empty(0)) == []


def _err(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("becomingone: ") and "Traceback" not in err
    return err


def test_errors(emu_data, tmp_path, capsys):
    base = ["plot", "--data", emu_data, "--out", str(tmp_path / "p")]
    err = _err(capsys, base + ["--device", "9"])
    assert "device 9 has no data" in err and "1, 2" in err
    err = _err(capsys, base + ["--device", "1", "--until", "1000"])
    assert "no device has data" in err and "1, 2" in err
    err = _err(capsys, base + ["--device", "1", "--since", "now", "--until=-1h"])
    assert "empty time range" in err
    err = _err(capsys, base + ["--device", "1", "--since", "yesterday"])
    assert "bad time 'yesterday'" in err and "ISO 8601" in err
    err = _err(capsys, base + ["--device", "1", "--last", "5x"])
    assert "bad --last '5x'" in err and "10m" in err
    err = _err(capsys, ["plot", "--data", str(tmp_path / "none"), "--device", "1"])
    assert "no memory database" in err
    assert not os.path.exists(tmp_path / "p")


def test_missing_kind_and_empty_memory(tmp_path, capsys):
    db = str(tmp_path / "m.sqlite")
    mem = Memory(db)
    mem.close()
    err = _err(capsys, ["plot", "--db", db, "--device", "1"])
    assert "no telemetry or coherence rows yet" in err
    mem = Memory(db)
    mem.table_rows("telemetry", [(100.0 + i, 1, 7, i, 10 * i, 0.5, 0.1, 0.2, 0.0, 0.3, 3 if i > 5 else 0, 0,
                                      6.5, 1.7, 3.1, 0, None)
                                 for i in range(10)], 110.0)
    mem.close()
    err = _err(capsys, ["plot", "--db", db, "--device", "1", "--kind", "coherence"])
    assert "no coherence data" in err and "coherence_history" in err
    out = str(tmp_path / "o")
    assert main(["plot", "--db", db, "--device", "1", "--out", out, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(res["files"]) == ["lateness", "pid"] and "coherence" in res["skipped"]
    for p in res["files"].values():
        _png_ok(p)


def test_latched_quarantine_is_shaded_until_clear_with_threat_and_marker(tmp_path):
    """A QUARANTINE decided at 2 s and latched (beats back to NOOP) until a CLEAR at 14 s is
    shaded red for all 12 s, the CLEAR is marked, and threat is drawn (issue 15)."""
    from becomingone.memory.plots import effective_decision, pid_chart, releases
    t = np.arange(0.0, 20.0, 0.1) + 1.7e9
    beat = np.zeros(len(t))
    beat[(t - t[0] >= 1.5) & (t - t[0] < 2.0)] = 3          # ALERT
    beat[(t - t[0] >= 2.0) & (t - t[0] < 2.3)] = 4          # QUARANTINE decided...
    flags = np.where((t - t[0] >= 2.0) & (t - t[0] < 14.0), 2, 0)   # ...latched until 14 s
    dec, latched = effective_decision(beat, flags)
    assert decision_runs(t - t[0], dec)[2][:3] == pytest.approx((2.0, 14.0, 4))
    tel = {"t": t, "pid_error": np.zeros(len(t)), "pid_output": np.full(len(t), 0.5),
           "threat": np.where(latched, 0.3, 0.05), "decision": dec, "latched": latched,
           "lateness_us": np.zeros(len(t))}
    assert releases(tel) == pytest.approx([t[140]])
    data = {"device_id": 1, "tel": tel, "emissary": (np.empty(0), np.empty(0)), "master": {}}
    path = pid_chart(data, str(tmp_path / "pid.png"))
    img = _png_ok(path)
    # columns inside the latched span (at 5 s and 12 s) carry the red shade; 17 s does not
    import matplotlib.image as mpimg
    img = mpimg.imread(path)[..., :3]
    x0, x1 = 0.128 * W, 0.945 * W          # where t = 0 and t = 19.9 s land (approximately)

    def reddish(sec):                      # sampled at y = 0.75: no line there
        x = int(x0 + (x1 - x0) * sec / 19.9)
        col = img[int(H * 0.2), x]
        return col[0] > col[1] + 0.05 and col[0] > col[2] + 0.05
    assert reddish(5.0) and reddish(12.0) and not reddish(17.0)
