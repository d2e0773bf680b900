"""Smoke test of `becomingone bench http` (host/bench/http.py): rows and columns present at
small sizes; the figures themselves are the benchmark's business."""
import argparse

from becomingone.bench import http as bench_http


def test_bench_http_rows_quick():
    p = argparse.ArgumentParser()
    bench_http.add_arguments(p)
    args = p.parse_args(["--devices", "5", "--requests", "40"])
    args.quick = True
    rows = bench_http.collect(args)
    by = {(r["name"], r.get("connections")): r for r in rows}
    for key in (("bare-http", 1), ("api-devices", 1), ("bare-http", 4), ("api-devices", 4),
                ("api-snapshot", 1)):
        assert by[key]["req_per_s"] > 0, by[key]
    assert by[("api-devices", 1)]["devices"] == 5 and by[("api-devices", 1)]["ratio_vs_bare"] > 0
    assert by[("metrics", None)]["scrape_ms"] > 0 and by[("metrics", None)]["bytes"] > 1000
    assert by[("snapshot-build", None)]["processing_thread_ms"] > 0
    # before/after in the same run: the former stdlib server and the footprint of both
    assert by[("api-devices-stdlib", 1)]["req_per_s"] > 0
    assert by[("api-devices", 1)]["ratio_vs_stdlib"] > 0
    fp = by[("footprint", None)]
    assert isinstance(fp["rss_mb_uvicorn"], float) and isinstance(fp["rss_mb_stdlib"], float), fp


def test_bench_table_fits_100_columns():
    from becomingone.commands.bench import format_table
    rows = [{"name": "api-devices-stdlib", "connections": 4, "bytes": 123456, "devices": 100,
             "req_per_s": 1234.5678, "p50_ms": 2.3, "p99_ms": 9.1, "ratio_vs_bare": 0.27,
             "detail": {"a": [1, 2, 3], "b": "x" * 150}}] * 3
    text = format_table(rows)
    assert all(len(ln) <= 100 for ln in text.splitlines()), text
    assert "123 456" in text and "1235" in text
