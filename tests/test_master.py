"""Master: exact window sums against a naive recompute, loss/coverage, late/dup, reboots,
batch vs per-frame ingest, many devices, long streams (ring wrap and block alignment)."""
import numpy as np
import pytest

from becomingone.core.master import Master, partial_scales


def make_rows(rng, n, first=0, loss=0.0):
    beats = np.arange(first, first + n, dtype=np.int64)
    p = np.empty((n, 5), dtype=np.int64)
    p[:, 0:2] = rng.integers(-2 ** 31, 2 ** 31, (n, 2))      # i32 dT
    p[:, 2:4] = rng.integers(0, 2 ** 32, (n, 2))             # u32 dE
    p[:, 4] = rng.integers(3, 6, n)
    keep = rng.random(n) >= loss
    return beats[keep], p[keep]


def naive(beats, parts, lo, hi):
    sel = (beats >= lo) & (beats <= hi)
    s = [int(x) for x in parts[sel].sum(axis=0, dtype=object)] if sel.any() else [0] * 5
    return tuple(s) + (int(sel.sum()),)


def check_all(m, dev, beats, parts, seconds_list):
    for w in seconds_list:
        r = m.window(dev, w)
        assert r["sums"] == naive(beats, parts, r["first_beat"], r["last_beat"]), w
        span = r["last_beat"] - r["first_beat"] + 1
        assert r["span_beats"] == span
        assert r["coverage"] == pytest.approx(r["beats"] / span)
        # window length: exact below fine span, within 1 % above (block-aligned start)
        want = min(round(w / m.beat_s[m.index_of(dev)]), int(r["last_beat"] - beats[0] + 1))
        assert abs(span - want) <= max(1, 0.01 * want), (w, span, want)


def test_exact_sums_with_loss_batches_of_all_sizes():
    rng = np.random.default_rng(7)
    m = Master(windows=(1, 10, 60, 300), tau_max=300, fine_span=2.0, beat_s=0.004)
    i = m.open_stream(3, 11, 1000, 4000)
    beats, parts = make_rows(rng, 120000, first=17, loss=0.02)
    pos = 0
    while pos < beats.shape[0]:
        k = int(rng.integers(1, 3000))
        sl = slice(pos, pos + k)
        m.ingest_batch(i, beats[sl], parts[sl, 0], parts[sl, 1], parts[sl, 2], parts[sl, 3], parts[sl, 4])
        pos += k
        if rng.random() < 0.05:
            check_all(m, 3, beats[:pos], parts[:pos], (0.5, 1, 3, 10, 45.5, 60, 299, 300))
    check_all(m, 3, beats, parts, (0.004, 1, 2.05, 10, 60, 123.4, 300))
    st = m.stream(3)
    assert st["lost"] == (beats[-1] - beats[0] + 1) - beats.shape[0]
    assert st["beats"] == beats.shape[0]


def test_per_frame_equals_batch_and_big_gaps():
    rng = np.random.default_rng(1)
    a = Master(windows=(10, 60), tau_max=60, beat_s=0.005)
    b = Master(windows=(10, 60), tau_max=60, beat_s=0.005)
    ia = a.open_stream(1, 1, 800, 5000)
    ib = b.open_stream(1, 1, 800, 5000)
    beats, parts = make_rows(rng, 30000, first=0, loss=0.01)
    beats = beats.copy()
    beats[10000:] += 50000          # a long outage: gap far longer than every ring
    beats[20000:] += 700            # and a medium one
    for bt, p in zip(beats.tolist(), parts.tolist()):
        assert a.ingest(ia, bt, *p)
    b.ingest_batch(ib, beats, parts[:, 0], parts[:, 1], parts[:, 2], parts[:, 3], parts[:, 4])
    for w in (0.5, 10, 33, 60):
        ra, rb = a.window(1, w), b.window(1, w)
        assert ra["sums"] == rb["sums"]
        assert ra["sums"] == naive(beats, parts, ra["first_beat"], ra["last_beat"])
    for ra_, rb_ in zip(a.rings, b.rings):
        assert np.array_equal(ra_[ia], rb_[ib])


def test_late_duplicate_stale_and_reboot():
    m = Master(windows=(10,), tau_max=10, beat_s=0.01)
    i = m.open_stream(9, 100, 100, 10000)
    assert m.ingest(i, 5, 1, 2, 3, 4, 1)
    assert not m.ingest(i, 5, 1, 2, 3, 4, 1)        # duplicate
    assert not m.ingest(i, 4, 1, 2, 3, 4, 1)        # late
    n = m.ingest_batch([i, i, i, i], [7, 6, 7, 3], [1] * 4, [1] * 4, [1] * 4, [1] * 4, [1] * 4,
                       boot=[100, 100, 100, 99])
    assert n == 2                                    # 6 and 7; 7 again dup; boot 99 stale
    st = m.stream(9)
    assert (st["dup"], st["late"], st["stale"]) == (2, 1, 1)
    assert st["beats"] == 3 and st["lost"] == 0
    assert m.open_stream(9, 100, 100, 10000) == i     # repeated HELLO keeps the stream
    assert m.stream(9)["beats"] == 3
    m.open_stream(9, 101, 100, 10000)                 # new boot: a new stream
    assert m.stream(9)["beats"] == 0
    assert m.window(9, 10)["beats"] == 0 and m.window(9, 10)["first_beat"] is None
    m.ingest(i, 0, 0, 0, 0, 0, 1)
    assert m.window(9, 10)["sums"] == (0, 0, 0, 0, 1, 1)


def test_many_devices_mixed_batches_and_query_all():
    rng = np.random.default_rng(3)
    m = Master(windows=(1, 10, 60), tau_max=60, beat_s=0.004, capacity=2)
    D = 40
    data = {}
    for d in range(D):
        m.open_stream(100 + d, 1, 1000, 4000 if d % 2 else 5000)
        data[d] = make_rows(rng, 18000, first=int(rng.integers(0, 1000)), loss=0.03 * (d % 3))
    cursor = [0] * D
    while True:
        idx, bt, pp = [], [], []
        for d in range(D):
            k = int(rng.integers(0, 400))
            b, p = data[d]
            sl = slice(cursor[d], cursor[d] + k)
            cursor[d] += k
            idx.append(np.full(b[sl].shape[0], m.index_of(100 + d)))
            bt.append(b[sl])
            pp.append(p[sl])
        idx, bt, pp = np.concatenate(idx), np.concatenate(bt), np.concatenate(pp)
        if idx.shape[0] == 0:
            break
        perm = rng.permutation(idx.shape[0])         # arbitrary order inside a batch
        m.ingest_batch(idx[perm], bt[perm], *[pp[perm, j] for j in range(5)])
    q = m.query_all()
    assert q["C"].shape == (D, 3)
    for d in range(D):
        b, p = data[d]
        for j, w in enumerate(m.window_seconds):
            r = m.window(100 + d, w)
            assert r["sums"] == naive(b, p, r["first_beat"], r["last_beat"])
            assert tuple(int(x) for x in q["sums"][d, j]) == r["sums"]
            assert q["T_hat"][d, j] == pytest.approx(r["T_hat"])
            assert 0 <= r["coverage"] <= 1


def test_physical_scaling_and_scale_free_coherence():
    ts, es = partial_scales(1000, sum_shift=2)
    assert es == 4000.0 and ts == 4000.0
    m = Master(windows=(1,), tau_max=1, beat_s=0.01)
    i = m.open_stream(1, 1, 1000, 10000, sum_shift=2)
    m.ingest(i, 0, 3, 0, 3, 3, 10)
    r = m.window(1, 1)
    assert r["T"] == pytest.approx(complex(3 * 4000, 0))
    assert r["E0"] == 12000 and r["EL"] == 12000
    assert r["C"] == pytest.approx((3 * 4000) ** 2 / (12000 * 12000))
    assert abs(r["T_hat"]) ** 2 == pytest.approx(r["C"])
    assert r["seconds"] == pytest.approx(0.01)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        Master(windows=(10, 7200), tau_max=3600)
    m = Master(windows=(10,), tau_max=10, beat_s=0.004)
    with pytest.raises(ValueError):
        m.open_stream(1, 1, 1000, 500)               # beat far shorter than the rings allow
    with pytest.raises(KeyError):
        m.window(42, 10)
    i = m.open_stream(1, 1, 1000, 4000)
    with pytest.raises(IndexError):
        m.ingest_batch([i + 1], [0], [0], [0], [0], [0])
    with pytest.raises(ValueError):
        m.window(1, 11)


def test_int64_prefix_wraps_but_windows_stay_exact():
    m = Master(windows=(1,), tau_max=1, fine_span=0.5, beat_s=0.01)
    i = m.open_stream(1, 1, 100, 10000)
    m.carry[i, 2] = np.iinfo(np.int64).max - 5       # as if the stream had run for ages
    big = 2 ** 32 - 1
    beats = np.arange(500)
    with np.errstate(over="ignore"):
        m.ingest_batch(i, beats, np.zeros(500), np.zeros(500), np.full(500, big), np.full(500, big),
                       np.ones(500))
    r = m.window(1, 1)
    assert r["sums"][2] == big * r["beats"] and r["sums"][3] == big * r["beats"]


def test_period_change_keeps_stream_other_changes_restart():
    m = Master(windows=(1,), tau_max=1, beat_s=0.004)
    i = m.open_stream(1, 5, 1000, 4000)
    m.ingest_batch(i, np.arange(100), np.ones(100), np.ones(100), np.ones(100), np.ones(100), np.ones(100))
    assert m.open_stream(1, 5, 1000, 5000) == i and m.stream(1)["beats"] == 100
    assert m.window(1, 1.0)["span_beats"] == 100                     # 1 s = 200 beats at 5 ms; 100 exist
    assert m.beat_s[i] == 0.005
    m.open_stream(1, 5, 1000, 5000, sum_shift=1)                      # partials change meaning
    assert m.stream(1)["beats"] == 0


def test_property_random_gaps_orders_and_mixed_apis():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=60, deadline=None)
    @hyp.given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 300), st.booleans()), min_size=1, max_size=25),
               st.lists(st.floats(0.001, 2.0), min_size=1, max_size=6), st.integers(0, 2 ** 16))
    def run(chunks, wins, seed):
        rng = np.random.default_rng(seed)
        m = Master(windows=(2.0,), tau_max=2.0, fine_span=0.2, beat_s=0.005)
        i = m.open_stream(1, 1, 1000, 5000)
        beat = int(rng.integers(0, 1000))
        allb, allp = [], []
        for size, gap, per_frame in chunks:
            beat += gap
            bs = np.arange(beat, beat + size)
            beat += size
            p = rng.integers(-1000, 1000, (size, 5))
            p[:, 2:] = np.abs(p[:, 2:])
            if per_frame:
                for b, row in zip(bs.tolist(), p.tolist()):
                    m.ingest(i, b, *row)
            else:
                perm = rng.permutation(size)
                m.ingest_batch(i, bs[perm], *[p[perm, j] for j in range(5)])
            allb.append(bs)
            allp.append(p)
        b = np.concatenate(allb)
        p = np.concatenate(allp)
        for w in wins:
            r = m.window(1, w)
            assert r["sums"] == naive(b, p, r["first_beat"], r["last_beat"])
            q = m.query([i], w)
            assert tuple(int(x) for x in q["sums"][0]) == r["sums"]
    run()


def test_ingest_records_with_the_batch_decoders_dtype():
    from becomingone.wire.telemetry import BEAT_DTYPE
    rec = np.zeros(50, dtype=BEAT_DTYPE)
    rec["device_id"], rec["boot_id"] = 7, 3
    rec["beat"] = np.arange(50) + 2 ** 31          # u32 beats above 2^31
    rec["dT_re"], rec["dT_im"] = -5, 2 ** 30
    rec["dE0"], rec["dEL"] = 2 ** 32 - 1, 2 ** 31
    rec["n_samples"] = 4
    rec["boot_id"][:5] = 2                          # an old boot: stale
    m = Master(windows=(1,), tau_max=1, beat_s=0.004)
    i = m.open_stream(7, 3, 1000, 4000)
    assert m.ingest_records(i, rec, boot=rec["boot_id"]) == 45
    r = m.window(7, 1)
    assert r["sums"] == (-5 * 45, 2 ** 30 * 45, (2 ** 32 - 1) * 45, 2 ** 31 * 45, 180, 45)
    assert m.stream(7)["stale"] == 5 and r["first_beat"] == 2 ** 31 + 5


def test_bench_master_quick_rows():
    import argparse
    from becomingone.bench.master import collect
    rows = collect(argparse.Namespace(quick=True))
    names = [r["name"] for r in rows]
    assert names == ["master", "naive", "integration"]
    assert rows[0]["queries_per_s"] > 0 and rows[1]["queries_per_s"] > 0 and rows[2]["cycle_ms"] > 0


def test_fill_and_span_in_device_time():
    """A window's span is device time (its KAIROS samples / f_k), not nominal beats: beats that
    hold twice their period's samples (an overloaded device skipping beats) give a window of
    half the beats; beats that hold less (lost frames, a dead sensor) leave it less full."""
    from becomingone.core.master import MIN_FILL
    m = Master(windows=(10.0, 60.0), tau_max=60.0, beat_s=0.004)
    i = m.open_stream(1, 1, 250.0, 4000)             # f_k = 250 Hz, 4 ms beats: 1 sample a beat
    n = 6000
    m.ingest_batch(i, np.arange(n), np.full(n, 10), np.zeros(n), np.full(n, 10), np.full(n, 10),
                   np.full(n, 1))
    w = m.window(1, 10.0)
    # (a 10 s window starts on an 8-beat block boundary: within 1 % of its length)
    assert abs(w["span_beats"] - 2500) <= 8 and w["seconds"] == pytest.approx(10.0, rel=0.01)
    assert w["fill"] >= 0.99 and w["ready"] and MIN_FILL == 0.9
    w60 = m.window(1, 60.0)
    assert w60["fill"] == pytest.approx(24.0 / 60.0) and not w60["ready"]
    # now 2 samples a beat (8 ms of sampler time per 4 ms beat): the 10 s window is ~1250 beats
    m.ingest_batch(i, np.arange(n, n + 3000), np.full(3000, 10), np.zeros(3000), np.full(3000, 10),
                   np.full(3000, 10), np.full(3000, 2))
    w = m.window(1, 10.0)
    assert abs(w["seconds"] - 10.0) < 0.25 and 1200 <= w["span_beats"] <= 1300 and w["fill"] >= 0.97
    q = m.query(np.array([i]), 10.0)
    assert q["span_beats"][0] == w["span_beats"] and q["seconds"][0] == pytest.approx(w["seconds"])
    assert q["fill"][0] == pytest.approx(w["fill"]) and bool(q["ready"][0])
    # a dead sensor: beats go on without samples, the window empties (not shortened)
    j = m.open_stream(2, 1, 250.0, 4000)
    m.ingest_batch(j, np.arange(n), np.full(n, 10), np.zeros(n), np.full(n, 10), np.full(n, 10),
                   np.full(n, 1))
    m.ingest_batch(j, np.arange(n, n + 1000), np.zeros(1000), np.zeros(1000),
                   np.zeros(1000), np.zeros(1000), np.zeros(1000))
    w = m.window(2, 10.0)
    assert abs(w["span_beats"] - 2500) <= 8 and w["fill"] == pytest.approx(6.0 / 10.0, abs=0.02)
    assert not w["ready"]
    qa = m.query_all()
    assert qa["fill"][1].tolist() == pytest.approx([w["fill"], m.window(2, 60.0)["fill"]])
