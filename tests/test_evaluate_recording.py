"""Recordings into the firmware's sensor (host/evaluate/recording.py, dataset.py): every bad
input is a clear error naming the file and what is allowed; resampling, scaling and clipping."""
import json
import os

import numpy as np
import pytest

from becomingone.cli import main
from becomingone.evaluate.dataset import DatasetError, load_index, write_index
from becomingone.evaluate.recording import RecordingError, load_recording, to_board, write_counts

pytest.importorskip("scipy")
from scipy.io import wavfile  # noqa: E402

FS = 12000


def _npy(tmp_path, a, name="x.npy"):
    p = tmp_path / name
    np.save(p, a)
    return str(p)


@pytest.mark.parametrize("make,kw,msg", [
    (lambda: np.zeros((10, 10, 3)), {"rate": FS}, r"shape \(10, 10, 3\).*allowed: 1-D"),
    (lambda: np.zeros((6000, 3)), {"rate": FS}, r"3 channels.*--column 0\.\.2"),
    (lambda: np.zeros(6000, dtype=complex), {"rate": FS}, r"type complex128.*integer counts or float"),
    (lambda: np.zeros(6000, dtype=bool), {"rate": FS}, r"type bool"),
    (lambda: np.array(["a"] * 6000), {"rate": FS}, r"type <U1"),
    (lambda: np.zeros(6000, dtype=np.int16), {"rate": FS}, r"need a scale.*--scale G_PER_COUNT"),
    (lambda: np.zeros(6000), {}, r"no sample rate.*--rate HZ"),
    (lambda: np.zeros(6000), {"rate": 0}, r"sample rate 0 Hz.*100\.\.1e\+06 Hz"),
    (lambda: np.zeros(6000), {"rate": -5}, r"sample rate -5 Hz"),
    (lambda: np.zeros(6000), {"rate": float("nan")}, r"sample rate nan"),
    (lambda: np.zeros(6000), {"rate": 5e6}, r"5e\+06 Hz"),
    (lambda: np.zeros(0), {"rate": FS}, r"holds no samples"),
    (lambda: np.zeros(100), {"rate": FS}, r"100 samples = 0\.008333 s.*at least 0\.05 s"),
    (lambda: np.r_[np.zeros(6000), np.nan, np.inf], {"rate": FS}, r"2 sample\(s\) are NaN or infinite \(the first at index 6000"),
    (lambda: np.zeros(6000), {"rate": FS, "scale": 0}, r"scale 0.*!= 0"),
    (lambda: np.zeros(6000), {"rate": FS, "scale": float("inf")}, r"scale inf"),
    (lambda: np.zeros(6000), {"rate": FS, "column": 2}, r"column 2 asked of a single-channel"),
])
def test_bad_npy_recordings(tmp_path, make, kw, msg):
    p = _npy(tmp_path, make())
    with pytest.raises(RecordingError, match=msg) as e:
        load_recording(p, **kw)
    assert p in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        load_recording(str(tmp_path / "none.npy"), rate=FS)
    with pytest.raises(RecordingError, match="is a folder"):
        load_recording(str(tmp_path), rate=FS)
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"e\.csv: the file is empty"):
        load_recording(str(empty), rate=FS)
    odd = tmp_path / "x.mp3"
    odd.write_bytes(b"ID3")
    with pytest.raises(RecordingError, match=r"unknown file type '\.mp3' \(allowed: \.npy, \.csv"):
        load_recording(str(odd), rate=FS)
    junk = tmp_path / "j.npy"
    junk.write_bytes(b"not numpy at all")
    with pytest.raises(RecordingError, match=r"j\.npy: not a"):
        load_recording(str(junk), rate=FS)
    pick = tmp_path / "p.npy"
    np.save(pick, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RecordingError, match="not a plain numpy array"):
        load_recording(str(pick), rate=FS)


def test_csv_formats_and_errors(tmp_path):
    x = np.sin(np.arange(1200) * 0.1) * 0.5
    one = tmp_path / "one.csv"
    one.write_text("accel_g\n" + "\n".join("%.6f" % v for v in x) + "\n")
    r = load_recording(str(one), rate=FS)
    assert r.g.shape == (1200,) and np.allclose(r.g, x, atol=1e-6) and r.kind == "csv"
    two = tmp_path / "two.csv"
    two.write_text("t;a\n# comment\n" + "\n".join("%d;%.6f" % (i, v) for i, v in enumerate(x)))
    with pytest.raises(RecordingError, match=r"2 channels.*--column 0\.\.1"):
        load_recording(str(two), rate=FS)
    assert np.allclose(load_recording(str(two), rate=FS, column=1).g, x, atol=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("a\n1\n2\nthree\n" + "4\n" * 1000)
    with pytest.raises(RecordingError, match=r"bad\.csv: line 4 is not numbers: 'three'"):
        load_recording(str(bad), rate=FS)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n" * 700 + "1,2,3\n")
    with pytest.raises(RecordingError, match=r"line 701 has 3 columns, the first data line 2"):
        load_recording(str(ragged), rate=FS, column=0)
    head = tmp_path / "head.csv"
    head.write_text("accel_g\n")
    with pytest.raises(RecordingError, match="holds no samples"):
        load_recording(str(head), rate=FS)
    nan = tmp_path / "nan.csv"
    nan.write_text("0.1\n" * 700 + "nan\n")
    with pytest.raises(RecordingError, match="NaN or infinite"):
        load_recording(str(nan), rate=FS)


def test_wav_pcm_float_and_errors(tmp_path):
    n = 48000
    x = (np.sin(np.arange(n) * 2 * np.pi * 100 / 48000) * 10000).astype(np.int16)
    pcm = tmp_path / "pcm.wav"
    wavfile.write(str(pcm), 48000, x)
    with pytest.raises(RecordingError, match=r"pcm\.wav: integer samples \(int16\) need a scale"):
        load_recording(str(pcm))
    with pytest.raises(RecordingError, match=r"--rate 12000 Hz differs from the WAV file's own 48000 Hz"):
        load_recording(str(pcm), rate=12000, scale=1e-4)
    r = load_recording(str(pcm), scale=1e-4)
    assert r.rate_hz == 48000 and r.dtype == "int16" and abs(r.g.max() - 1.0) < 1e-3
    fl = tmp_path / "f.wav"
    wavfile.write(str(fl), 24000, np.stack([x / 32768.0, -x / 32768.0], 1).astype(np.float32))
    with pytest.raises(RecordingError, match="2 channels"):
        load_recording(str(fl))
    r = load_recording(str(fl), column=1)
    assert r.rate_hz == 24000 and r.g.shape == (n,) and r.g.min() < -0.3
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVEjunkjunk")
    with pytest.raises(RecordingError, match=r"junk\.wav: not a readable WAV file"):
        load_recording(str(junk))


def test_resampling_is_anti_aliased_and_reported():
    from becomingone.evaluate.recording import Recording
    # a 9 kHz tone at 48 kHz is above the 6 kHz Nyquist of 12 kHz: decimation must remove it
    # (a plain [::4] would fold it to 3 kHz at full amplitude)
    t = np.arange(48000) / 48000.0
    tone = 0.5 * np.sin(2 * np.pi * 9000 * t) + 0.5 * np.sin(2 * np.pi * 500 * t)
    sig = to_board(Recording("x", tone, 48000, "npy", "float64", None), 12000, 128.0, 12)
    assert (sig.up, sig.down) == (1, 4) and "decimated 48000 Hz -> 12000 Hz" in sig.note
    assert "anti-alias" in sig.note and sig.counts.shape == (12000,)
    spec = np.abs(np.fft.rfft(sig.g[1000:-1000] * np.hanning(10000)))
    f = np.fft.rfftfreq(10000, 1 / 12000.0)
    at = lambda hz: spec[np.argmin(np.abs(f - hz))]  # noqa: E731
    assert at(3000) < 1e-3 * at(500)          # no alias of the 9 kHz tone
    same = to_board(Recording("x", tone[:12000], 12000, "npy", "float64", None), 12000, 128.0)
    assert "no resampling" in same.note and np.array_equal(same.g, tone[:12000])
    up = to_board(Recording("x", tone[:8000], 8000, "npy", "float64", None), 12000, 128.0)
    assert (up.up, up.down) == (3, 2) and "interpolated" in up.note


def test_counts_mid_scale_and_clipping(tmp_path):
    from becomingone.evaluate.recording import Recording
    g = np.array([0.0, 1.0, -1.0, 20.0, -20.0, 15.99] * 200)
    sig = to_board(Recording("x", g, 12000, "npy", "float64", None), 12000, 128.0, 12)
    assert sig.counts[:6].tolist() == [2048, 2176, 1920, 4095, 0, 4095]
    assert sig.clipped == 400 and sig.describe()["clipped_fraction"] == round(400 / 1200, 6)
    p = write_counts(str(tmp_path / "c.u16"), sig.counts)
    assert os.path.getsize(p) == 2400 and np.fromfile(p, "<u2")[1] == 2176


def test_index_errors_name_the_problem(tmp_path):
    d = tmp_path / "ds"
    with pytest.raises(DatasetError, match="no such folder"):
        load_index(str(d))
    d.mkdir()
    with pytest.raises(DatasetError, match="no index.json there"):
        load_index(str(d))
    (d / "index.json").write_text("{nope")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_index(str(d))
    ok = np.zeros(12000, dtype=np.int16)
    np.save(d / "a.npy", ok)
    rec = {"record": 1, "condition": "normal", "sample_rate_hz": 12000,
           "channels": {"DE": {"file": "a.npy", "scale_g_per_count": 0.001}}}
    write_index(str(d), [rec, dict(rec, record=2, channels={"DE": {"file": "gone.npy",
                                                                    "scale_g_per_count": 0.001}}),
                         dict(rec, record=3, channels={"DE": {"file": "gone2.npy",
                                                               "scale_g_per_count": 0.001}})])
    with pytest.raises(DatasetError, match=r"names 2 file\(s\) that do not exist: .*gone\.npy \(records\[1\] \(record 2\)\)"):
        load_index(str(d))
    write_index(str(d), [dict(rec, sample_rate_hz="fast")])
    with pytest.raises(DatasetError, match=r"'sample_rate_hz' = 'fast' is not int or float"):
        load_index(str(d))
    write_index(str(d), [{k: v for k, v in rec.items() if k != "condition"}])
    with pytest.raises(DatasetError, match=r"records\[0\] \(record 1\) has no 'condition'"):
        load_index(str(d))
    write_index(str(d), [dict(rec, channels={"DE": {"file": "a.npy"}})])
    with pytest.raises(DatasetError, match="has no 'scale_g_per_count'"):
        load_index(str(d))
    write_index(str(d), [rec])
    with pytest.raises(DatasetError, match="no record with a FE channel"):
        load_index(str(d), channel="FE")


def test_index_channel_skips_and_evaluate_cli_errors(tmp_path, capsys):
    d = tmp_path / "ds"
    d.mkdir()
    np.save(d / "a.npy", np.zeros(12000, dtype=np.int16))
    np.save(d / "b.npy", np.zeros(12000, dtype=np.float32))
    rec = {"record": 1, "condition": "normal", "sample_rate_hz": 12000,
           "channels": {"DE": {"file": "a.npy", "scale_g_per_count": 0.001},
                        "FE": {"file": "a.npy", "scale_g_per_count": 0.001}}}
    der = {"record": 9, "condition": "normal", "sample_rate_hz": 12000, "files": {"DE": "b.npy"}}
    write_index(str(d), [rec, dict(rec, record=2, channels={"DE": rec["channels"]["DE"]})], [der])
    items, skipped = load_index(str(d), channel="FE")
    assert [i.record for i in items] == [1]
    assert [(s["record"], s["derived"]) for s in skipped] == [(2, False), (9, True)]
    assert "no FE channel (has DE)" in skipped[0]["reason"]
    items, _ = load_index(str(d), channel="DE")
    assert [(i.record, i.derived, i.scale) for i in items] == [(1, False, 0.001), (2, False, 0.001),
                                                               (9, True, None)]
    with pytest.raises(DatasetError, match="no record with a XX channel"):
        load_index(str(d), channel="XX")
    # the CLI: a missing file is named, exit 2, no traceback
    write_index(str(d), [dict(rec, channels={"DE": {"file": "missing.npy", "scale_g_per_count": 1}})])
    assert main(["evaluate", str(d), "--runtime", "cpython"]) == 2
    err = capsys.readouterr().err
    assert "missing.npy" in err and "do not exist" in err and "Traceback" not in err
    # a NaN inside a listed file: named before any firmware runs
    np.save(d / "n.npy", np.r_[np.zeros(12000), np.nan].astype(np.float32))
    write_index(str(d), [], [dict(der, files={"DE": "n.npy"})])
    assert main(["evaluate", str(d), "--runtime", "cpython", "--json"]) == 2
    err = capsys.readouterr().err
    assert "n.npy" in err and "NaN or infinite" in err


def test_replay_bad_input_writes_nothing(tmp_path, capsys):
    data = tmp_path / "data"
    bad = _npy(tmp_path, np.r_[np.zeros(12000), np.inf])
    assert main(["replay", bad, "--rate", "12000", "--data", str(data), "--runtime", "cpython"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not data.exists()
    assert main(["replay", _npy(tmp_path, np.zeros(12000, np.int16), "i.npy"), "--rate", "12000",
                 "--data", str(data)]) == 2
    assert "--scale G_PER_COUNT" in capsys.readouterr().err and not data.exists()
    assert main(["replay", bad, "--data", str(data)]) == 2
    assert "--rate HZ" in capsys.readouterr().err and not data.exists()
