"""Smoke test of `becomingone bench cell` (a few devices, a 1 s window): the peer row, the cell
rows from a real coordinator fed by a separate sender process with real signed frames, the
ratios against the peer from the same run, and the ceiling row."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_cell_small_json():
    p = subprocess.run([sys.executable, "-m", "becomingone.cli", "bench", "cell", "--json",
                        "--devices", "10,30", "--seconds", "1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)                   # one JSON object, nothing else on stdout
    assert out["bench"] == "cell"
    rows = {r["name"]: r for r in out["rows"]}
    assert list(rows) == ["bare-verify-30", "cell-10", "cell-30", "cell-30-batch5-lean", "ceiling"]
    for name in ("bare-verify-30", "cell-10", "cell-30", "cell-30-batch5-lean"):
        r = rows[name]
        assert "error" not in r, r
        assert r["offered_fps"] > 0 and r["accepted_beats_per_s"] > 0, r
        assert 0.0 <= r["loss"] <= 1.0 and r["cpu_us_per_beat"] > 0, r
    for name in ("cell-10", "cell-30", "cell-30-batch5-lean"):
        r = rows[name]
        # every emulated device got a session and no frame was refused (keys, tags, CRCs right)
        assert r["sessions"] == r["devices"] and r["rejected"] == {}, r
        assert r["memory_rows_per_s"] > 0 and r["rss_mb"] > 0, r
        assert r["saturated"] in (None, "processing thread", "socket", "cpu share", "sender"), r
    assert rows["cell-30-batch5-lean"]["batch"] == 5
    for name in ("cell-30", "cell-30-batch5-lean"):  # same device count as the peer: ratios
        assert rows[name]["beats_ratio_vs_bare"] > 0 and rows[name]["cpu_per_beat_ratio_vs_bare"] > 0
    assert "beats_ratio_vs_bare" not in rows["cell-10"]
    c = rows["ceiling"]
    assert c["devices_tried"] == [10, 30] and c["devices_sustained"] in (0, 10, 30)
    assert c["devices_per_core_cell"] > 0 and c["devices_per_core_bare-verify"] > 0
