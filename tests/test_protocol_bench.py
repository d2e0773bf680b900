"""Smoke test of `becomingone bench protocol` (quick sizes): rows, columns, sane figures."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_protocol_quick_json():
    p = subprocess.run([sys.executable, "-m", "becomingone.cli", "bench", "protocol", "--json",
                        "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)  # one JSON object, nothing else on stdout
    rows = {r["name"]: r for r in out["rows"]}
    for name in ("becomingone", "becomingone-batch", "mavlink2", "mavlink2-signed", "json",
                 "cbor"):
        r = rows[name]
        assert r["bytes"] > 0 and r["encode_per_s"] > 0 and r["decode_per_s"] > 0, r
    assert rows["becomingone"]["bytes"] == 63
    assert rows["becomingone"]["bytes"] < rows["mavlink2"]["bytes"] < rows["json"]["bytes"]
    assert rows["becomingone"]["mpy_alloc_bytes"] == 0
    assert rows["becomingone-batch"]["mpy_alloc_bytes"] == 0
    t = rows["targets"]
    assert 0 < t["bytes_vs_mavlink2"] < 1 and t["batch_decode_vs_mavlink2"] > 1
