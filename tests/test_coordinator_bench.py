"""Smoke test of `becomingone bench ingest` (host/bench/ingest.py): rows and columns present,
frames accounted for. Small sizes; the figures themselves are the benchmark's business."""
import argparse

from becomingone.bench import ingest as bench_ingest


def test_bench_ingest_rows_quick():
    p = argparse.ArgumentParser()
    bench_ingest.add_arguments(p)
    args = p.parse_args(["--frames", "4000", "--devices", "50", "--no-footprint",
                         "--junk-rates", "0,2000", "--junk-devices", "10", "--load-devices", ""])
    args.quick = True
    all_rows = bench_ingest.collect(args)
    rows = {r["name"]: r for r in all_rows}
    for name in ("bare-recv", "becomingone"):
        r = rows[name]
        assert r["frames_per_s"] > 0 and r["sent"] == 4000
        assert r["lost"] >= 0
    assert rows["becomingone"]["ratio_vs_bare"] > 0
    # every frame the generator sent reached the coordinator as a device's (HELLO first)
    assert not rows["becomingone"].get("rejected"), rows["becomingone"]
    junk = [r for r in all_rows if r["name"] == "junk-mix"]
    assert [r["junk_per_s"] for r in junk] == [0, 2000], junk
    clean, mixed = junk
    for r in junk:
        assert r["genuine_sent"] > 0 and r["genuine_accepted"] + r["genuine_lost"] >= \
            r["genuine_sent"] and r["phantom_devices"] == 0, r
        assert r["ratio_vs_bare"] > 0 and "lag_s_p99" in r
    assert clean["junk_sent"] == 0 and clean["accepted_ratio_vs_clean"] == 1.0
    # the junk is counted by reason, every datagram of it
    assert mixed["junk_sent"] > 0 and sum(mixed["junk_rejected"].values()) == mixed["junk_sent"]
    assert mixed["fps_ratio_vs_clean"] > 0 and mixed["accepted_ratio_vs_clean"] > 0


def test_junk_is_the_worst_mix():
    """Alternating TELEMETRY-typed datagrams with a correct CRC and other types."""
    from shared import protocol as P
    from shared.crc import crc32
    junk = bench_ingest.junk_datagrams(40)
    assert all(j[1] == P.TELEMETRY and len(j) == P.HEADER_LEN + P.TELEMETRY_LEN + P.CRC_LEN
               for j in junk[0::2])
    assert sum(j[1] != P.TELEMETRY for j in junk[1::2]) >= 15
    assert all(crc32(j[:-4]) == int.from_bytes(j[-4:], "little") for j in junk)


def test_frames_are_valid_telemetry():
    from becomingone.wire.telemetry import decode_telemetry_batch
    blob = bench_ingest.build_frames(30, 7)
    res = decode_telemetry_batch(blob, frame_size=bench_ingest.FRAME)
    assert res.frames_ok == 30 and not any(res.rejects.values())
    assert sorted(set(res.beats["device_id"].tolist())) == list(range(1, 8))


def test_bench_load_rows_and_auto_devices():
    """The load rows (offered against accepted, shed by reason) and the junk-mix rows' genuine
    load sized from the bare-recv row of the same run."""
    assert bench_ingest.auto_devices(400000) == 927          # 0.55 x 400k / 237.5 frames/s
    assert bench_ingest.auto_devices(None) == 40
    rows = bench_ingest.load_rows([10, 20], 1.0, bare_fps=100000)
    assert [r["name"] for r in rows] == ["load", "load"] and [r["devices"] for r in rows] == [10, 20]
    for r in rows:
        assert "error" not in r, r
        assert r["offered_fps"] > 0 and r["accepted_fps"] > 0 and r["genuine_lost"] >= 0
        assert isinstance(r["shed"], dict) and r["queued_frames_max"] >= 0
        assert r["ratio_vs_bare"] == round(r["accepted_fps"] / 100000, 4)
        assert 0 < r["fps_ratio_vs_best"] <= 1.0
    assert max(r["fps_ratio_vs_best"] for r in rows) == 1.0
