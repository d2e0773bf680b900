"""Smoke test of `becomingone bench ingest` (host/bench/ingest.py): rows and columns present,
frames accounted for. Small sizes; the figures themselves are the benchmark's business."""
import argparse

from becomingone.bench import ingest as bench_ingest


def test_bench_ingest_rows_quick():
    p = argparse.ArgumentParser()
    bench_ingest.add_arguments(p)
    args = p.parse_args(["--frames", "4000", "--devices", "50", "--no-footprint"])
    args.quick = True
    rows = {r["name"]: r for r in bench_ingest.collect(args)}
    for name in ("bare-recv", "becomingone"):
        r = rows[name]
        assert r["frames_per_s"] > 0 and r["sent"] == 4000
        assert r["lost"] >= 0
    assert rows["becomingone"]["ratio_vs_bare"] > 0


def test_frames_are_valid_telemetry():
    from becomingone.wire.telemetry import decode_telemetry_batch
    blob = bench_ingest.build_frames(30, 7)
    res = decode_telemetry_batch(blob, frame_size=bench_ingest.FRAME)
    assert res.frames_ok == 30 and not any(res.rejects.values())
    assert sorted(set(res.beats["device_id"].tolist())) == list(range(1, 8))
