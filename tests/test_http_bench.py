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
