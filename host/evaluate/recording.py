"""Recorded vibration into the firmware's sensor: load, check, resample, convert to ADC counts.

A recording is one channel of acceleration samples at a known rate:

    npy   a 1-D array (or one column / one row of a 2-D array); integer dtypes are raw counts
          (``scale`` = g per count is then required), float dtypes are values in g (``scale``,
          if given, multiplies them: units per value)
    csv   one number per line, or several comma/semicolon/tab/space separated columns (``column``
          picks one, 0-based; required when there are several); a first line that is not a
          number is a header and skipped; blank lines and lines starting with # are skipped
    wav   PCM (uint8, int16, int32; 24-bit as int32) or float (float32/float64) via
          scipy.io.wavfile; the rate is the file's; PCM needs ``scale`` (g per count), float
          WAV values are taken as g unless ``scale`` says otherwise; ``column`` picks a channel

``load_recording(path, rate=None, scale=None, column=None) -> Recording`` (values in g, float64)
``to_board(rec, f_s, counts_per_unit, adc_bits) -> BoardSignal``: resampled to the board's f_s
(scipy.signal.resample_poly: a polyphase FIR low-pass at the lower of the two Nyquist rates, so
decimation is anti-aliased; ``BoardSignal.note`` says what was done), then in ADC counts:
round(g * counts_per_unit) + mid-scale, clipped to 0 .. 2^adc_bits - 1 (clipped samples counted
and reported). ``write_counts(path, counts)`` writes the raw little-endian uint16 file that
``device/main.py --sensor-file`` reads.

Every error is a RecordingError (a UserError: the CLI prints it without a traceback) naming the
file and what is allowed; nothing is run or written before a recording passed every check.
"""
import math
import os
from fractions import Fraction

import numpy as np

from becomingone.errors import UserError

FORMATS = ("npy", "csv", "wav")
RATE_MIN, RATE_MAX = 100.0, 1e6          # Hz: recordings outside this are refused
MIN_SECONDS = 0.05                        # shorter than this cannot fill a single beat window
_ALLOWED_NPY = "a 1-D numeric array (integer counts with a scale, or float values in g)"


class RecordingError(UserError):
    """A recording that cannot be used: the message names the file and what is allowed."""


class Recording:
    """Samples in g (float64), their rate, and where they came from."""

    def __init__(self, path, g, rate_hz, kind, dtype, scale, notes=()):
        self.path = path
        self.g = g
        self.rate_hz = float(rate_hz)
        self.kind = kind
        self.dtype = dtype
        self.scale = scale
        self.notes = list(notes)

    @property
    def seconds(self):
        return self.g.shape[0] / self.rate_hz

    def describe(self):
        return {"file": self.path, "format": self.kind, "dtype": self.dtype,
                "rate_hz": self.rate_hz, "samples": int(self.g.shape[0]),
                "seconds": round(self.seconds, 4), "scale": self.scale, "notes": self.notes}


class BoardSignal:
    """A recording as the board would sample it: g at f_s (float64) and ADC counts (uint16)."""

    def __init__(self, g, counts, f_s, up, down, clipped, note):
        self.g = g
        self.counts = counts
        self.f_s = f_s
        self.up, self.down = up, down
        self.clipped = clipped
        self.note = note

    @property
    def seconds(self):
        return self.counts.shape[0] / float(self.f_s)

    def describe(self):
        return {"f_s": self.f_s, "samples": int(self.counts.shape[0]),
                "seconds": round(self.seconds, 4), "resample": [self.up, self.down],
                "clipped": self.clipped, "clipped_fraction": round(
                    self.clipped / max(1, self.counts.shape[0]), 6), "note": self.note}


def _fail(path, what, allowed):
    raise RecordingError("recording %s: %s (allowed: %s)" % (path, what, allowed))


def _check_rate(path, rate, what="--rate"):
    if rate is None:
        _fail(path, "no sample rate given", "%s HZ for npy and CSV files; WAV files carry "
              "their own" % what)
    try:
        r = float(rate)
    except (TypeError, ValueError):
        _fail(path, "sample rate %r is not a number" % (rate,), "%g..%g Hz" % (RATE_MIN, RATE_MAX))
    if not (math.isfinite(r) and RATE_MIN <= r <= RATE_MAX):
        _fail(path, "sample rate %g Hz" % r, "%g..%g Hz" % (RATE_MIN, RATE_MAX))
    return r


def _check_scale(path, scale):
    if scale is None:
        return None
    try:
        s = float(scale)
    except (TypeError, ValueError):
        _fail(path, "scale %r is not a number" % (scale,), "a finite number != 0 (g per count)")
    if not math.isfinite(s) or s == 0:
        _fail(path, "scale %g" % s, "a finite number != 0 (g per count, or units per value)")
    return s


def _one_channel(path, a, column, what):
    """A 1-D view of a (n,), (n, 1), (1, n) or (n, k) array with column chosen."""
    if a.ndim == 1:
        if column not in (None, 0):
            _fail(path, "column %r asked of a single-channel %s" % (column, what), "column 0 or none")
        return a
    if a.ndim == 2:
        if column is None:
            if a.shape[1] == 1:
                return a[:, 0]
            if a.shape[0] == 1:
                return a[0]
            _fail(path, "%s has shape %s: %d channels" % (what, a.shape, a.shape[1]),
                  "one channel, or choose one with --column 0..%d" % (a.shape[1] - 1))
        if not 0 <= column < a.shape[1]:
            _fail(path, "column %r of a %s with %d channels" % (column, what, a.shape[1]),
                  "0..%d" % (a.shape[1] - 1))
        return a[:, column]
    _fail(path, "%s has shape %s" % (what, a.shape), "1-D, or 2-D (samples x channels)")


def _finite(path, g):
    bad = ~np.isfinite(g)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _fail(path, "%d sample(s) are NaN or infinite (the first at index %d: %r)"
              % (int(bad.sum()), i, float(g[i])), "finite numbers only")


def _load_npy(path, column):
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        _fail(path, "not a plain numpy array (%s)" % (e,), _ALLOWED_NPY)
    except (OSError, EOFError) as e:
        if isinstance(e, OSError) and getattr(e, "errno", None):
            raise RecordingError("recording %s: cannot read it: %s" % (path, e.strerror or e))
        _fail(path, "not a .npy file (%s)" % (e,), _ALLOWED_NPY)
    if not isinstance(a, np.ndarray):
        _fail(path, "holds %s, not an array" % type(a).__name__, _ALLOWED_NPY)
    return _one_channel(path, a, column, "array"), str(a.dtype)


def _load_csv(path, column):
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        _fail(path, "not a UTF-8 text file", "a CSV file of numbers, one sample per line")
    rows = []
    header_seen = False
    width = None
    for n, line in enumerate(lines, start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        for sep in (",", ";", "\t"):
            if sep in s:
                parts = [p.strip() for p in s.split(sep)]
                break
        else:
            parts = s.split()
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            if not rows and not header_seen:
                header_seen = True           # a header line: column names
                continue
            _fail(path, "line %d is not numbers: %r" % (n, s[:60]),
                  "numbers separated by , ; tab or spaces; one header line at most")
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            _fail(path, "line %d has %d columns, the first data line %d" % (n, len(vals), width),
                  "the same number of columns on every line")
        rows.append(vals)
    a = np.asarray(rows, dtype=np.float64)
    if a.size == 0:
        return np.zeros(0), "float64"
    return _one_channel(path, a, column, "CSV file"), "float64"


def _load_wav(path, column):
    import warnings
    from scipy.io import wavfile
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, a = wavfile.read(path)
    except OSError as e:
        if getattr(e, "errno", None):
            raise RecordingError("recording %s: cannot read it: %s" % (path, e.strerror or e))
        _fail(path, "not a readable WAV file (%s)" % (e,), "PCM 8/16/24/32-bit or IEEE float WAV")
    except Exception as e:     # noqa: BLE001 -- scipy's parser raises several kinds on bad files
        _fail(path, "not a readable WAV file (%s: %s)" % (type(e).__name__, e),
              "PCM 8/16/24/32-bit or IEEE float WAV")
    if a.dtype.kind not in "iuf":
        _fail(path, "WAV samples of type %s" % a.dtype, "PCM integers or float")
    return _one_channel(path, a, column, "WAV file"), str(a.dtype), float(rate)


def load_recording(path, rate=None, scale=None, column=None, fmt=None):
    """Read and check one recording (see the module docstring); returns a Recording in g."""
    path = str(path)
    if not os.path.exists(path):
        raise RecordingError("recording %s: no such file" % path)
    if os.path.isdir(path):
        raise RecordingError("recording %s: is a folder (give a .npy, .csv or .wav file)" % path)
    if fmt is None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        fmt = {"npy": "npy", "csv": "csv", "txt": "csv", "wav": "wav"}.get(ext)
        if fmt is None:
            _fail(path, "unknown file type %r" % ("." + ext if ext else "(no extension)"),
                  ".npy, .csv (or .txt), .wav")
    elif fmt not in FORMATS:
        _fail(path, "format %r" % (fmt,), ", ".join(FORMATS))
    if os.path.getsize(path) == 0:
        _fail(path, "the file is empty", "at least %g s of samples" % MIN_SECONDS)
    if column is not None and (not isinstance(column, int) or column < 0):
        _fail(path, "column %r" % (column,), "a channel index >= 0")
    sc = _check_scale(path, scale)
    notes = []
    if fmt == "wav":
        x, dtype, wav_rate = _load_wav(path, column)
        if rate is not None and abs(_check_rate(path, rate) - wav_rate) > 1e-6 * wav_rate:
            _fail(path, "--rate %g Hz differs from the WAV file's own %g Hz" % (float(rate), wav_rate),
                  "no --rate for WAV files, or the file's rate")
        r = _check_rate(path, wav_rate, "the WAV header's rate")
    elif fmt == "npy":
        x, dtype = _load_npy(path, column)
        r = _check_rate(path, rate)
    else:
        x, dtype = _load_csv(path, column)
        r = _check_rate(path, rate)
    kind = x.dtype.kind
    if kind not in "iuf":
        _fail(path, "samples of type %s" % x.dtype, "integer counts or float values")
    if x.shape[0] == 0:
        _fail(path, "holds no samples", "at least %g s of samples" % MIN_SECONDS)
    if kind in "iu":
        if sc is None:
            _fail(path, "integer samples (%s) need a scale" % dtype,
                  "--scale G_PER_COUNT (e.g. 0.000162 for the CWRU drive-end channel)")
        g = x.astype(np.float64) * sc
        notes.append("integer samples x %g g per count" % sc)
    else:
        g = x.astype(np.float64)
        _finite(path, g)
        if sc is not None:
            g = g * sc
            notes.append("values x %g" % sc)
        else:
            notes.append("float values taken as g")
    if g.shape[0] < MIN_SECONDS * r:
        _fail(path, "%d samples = %.4g s at %g Hz" % (g.shape[0], g.shape[0] / r, r),
              "at least %g s of samples" % MIN_SECONDS)
    _finite(path, g)
    return Recording(path, g, r, fmt, dtype, sc, notes)


def resample_ratio(rate, f_s, max_den=1000):
    """(up, down) with f_s / rate ~= up / down (exact for rates like 48000 -> 12000 = 1/4)."""
    fr = Fraction(f_s / float(rate)).limit_denominator(max_den)
    if fr.numerator == 0:
        raise RecordingError("a rate of %g Hz cannot be resampled to %g Hz" % (rate, f_s))
    return fr.numerator, fr.denominator


def to_board(rec, f_s, counts_per_unit, adc_bits=12):
    """The recording as the board samples it (see the module docstring)."""
    from scipy.signal import resample_poly
    up, down = resample_ratio(rec.rate_hz, f_s)
    if up == down:
        g = rec.g.astype(np.float64, copy=True)
        note = "recorded at the board's rate %g Hz: no resampling" % f_s
    else:
        g = resample_poly(rec.g, up, down)
        eff = rec.rate_hz * up / down
        if up < down:
            note = ("decimated %g Hz -> %g Hz (x%d/%d) with scipy.signal.resample_poly: "
                    "anti-alias FIR low-pass at %g Hz; content above it is removed"
                    % (rec.rate_hz, f_s, up, down, min(rec.rate_hz, eff) / 2))
        else:
            note = ("interpolated %g Hz -> %g Hz (x%d/%d) with scipy.signal.resample_poly: the "
                    "board sees nothing above the recording's Nyquist frequency %g Hz"
                    % (rec.rate_hz, f_s, up, down, rec.rate_hz / 2))
        if abs(eff - f_s) > 1e-9 * f_s:
            note += "; rate ratio approximated: %g Hz played as %g Hz" % (rec.rate_hz, f_s * down / up)
    top = (1 << adc_bits) - 1
    mid = 1 << (adc_bits - 1)
    c = np.rint(g * counts_per_unit) + mid
    clipped = int(np.count_nonzero((c < 0) | (c > top)))
    counts = np.clip(c, 0, top).astype("<u2")
    return BoardSignal(g, counts, int(f_s), up, down, clipped, note)


def write_counts(path, counts):
    """Raw little-endian uint16 samples (device/main.py --sensor-file)."""
    np.asarray(counts, dtype="<u2").tofile(path)
    return path
