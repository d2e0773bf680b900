"""Device clock offset and drift (SPEC §6; ET Eq 22 trajectory extrapolation).

NTP-style exchange: the host sends TIME_SYNC at host time t0 (µs, monotonic); the device
stamps its clock on receipt (t1) and on reply (t2; the same as t1 when the device gives one
stamp); the host receives the reply at t3. Then
    offset θ = ((t1 − t0) + (t2 − t3)) / 2        (device clock − host clock)
    delay  δ = (t3 − t0) − (t2 − t1)
The error of θ is at most δ/2, so the estimator keeps a sliding window of samples, drops
those whose delay is far above the window's minimum (queueing noise), and fits by least
squares θ(t) = θ0 + v·(t − t_ref) + ½·a·(t − t_ref)² (the curvature a is kept only with >= 12
samples and when it halves the residual; otherwise linear; a single sample gives v = 0). The prediction at a later host time t is the seed's
trajectory extrapolation  P_next ≈ P + v·Δt + ½·a·Δt²  from the newest fitted point.
drift_ppm = v · 1e6 (µs of device clock gained per µs of host clock).
An exchange with a negative round trip is discarded (counted), never clamped to 0.
device_time_unix(t) maps a device timestamp to host wall time with the fit: WITNESS ledger
entries, memory telemetry rows and the API carry it (docs/HOST.md "Time sync").
"""
import collections
import time

import numpy as np

from becomingone.util.times import monotonic_us

__all__ = ["ClockEstimator", "trajectory_extrapolate", "ntp_sample"]


def trajectory_extrapolate(p, v, a, dt):
    """ET Eq 22: P_next ≈ P + v·Δt + ½·a·Δt²."""
    return p + v * dt + 0.5 * a * dt * dt


def ntp_sample(t0, t1, t2, t3):
    """(offset, delay) from the four NTP timestamps (µs)."""
    return ((t1 - t0) + (t2 - t3)) / 2.0, (t3 - t0) - (t2 - t1)


class ClockEstimator:
    """A device's clock offset and drift from TIME_SYNC exchanges (module docstring): owns
    the sliding window of samples and the fitted trajectory. Raises ValueError for an
    exchange that is impossible (negative delay)."""
    def __init__(self, window=32, delay_slack_us=2000.0, delay_factor=3.0):
        self.samples = collections.deque(maxlen=int(window))   # (t_host_mid, offset, delay)
        self.delay_slack_us = float(delay_slack_us)
        self.delay_factor = float(delay_factor)
        self.count = 0
        self.rejected = 0
        self.discarded = 0
        self._fit = None

    def add_exchange(self, t0, t1, t2, t3):
        """Add one exchange (all µs). Returns (offset, delay) of the sample. An impossible
        exchange -- received before it was sent, or a negative round trip (the device's
        stamps are wrong) -- is discarded (ValueError, counted in `discarded`), never clamped:
        a clamped sample would become the window's minimum delay and the filter would then
        refuse every honest sample."""
        if t3 < t0:
            self.discarded += 1
            raise ValueError("time sync: reply received before the request was sent")
        off, delay = ntp_sample(t0, t1, t2, t3)
        if delay < 0:
            self.discarded += 1
            raise ValueError("time sync: negative round trip %.0f us (device stamps t1 %d, "
                             "t2 %d): sample discarded" % (delay, t1, t2))
        self.add_sample((t0 + t3) / 2.0, off, delay)
        return off, delay

    def add_sample(self, t_host, offset, delay=0.0):
        self.samples.append((float(t_host), float(offset), float(delay)))
        self.count += 1
        self._fit = None

    def _solve(self):
        if self._fit is not None:
            return self._fit
        if not self.samples:
            return None
        arr = np.array(self.samples, dtype=np.float64)
        dmin = arr[:, 2].min()
        keep = arr[:, 2] <= dmin * self.delay_factor + self.delay_slack_us
        self.rejected = int((~keep).sum())
        arr = arr[keep]
        t, y, d = arr[:, 0], arr[:, 1], arr[:, 2]
        t_ref = t[-1]
        x = (t - t_ref) / 1e6                 # seconds: keeps the normal equations well scaled
        w = 1.0 / (1.0 + d / max(1.0, dmin + 1.0))     # low-delay samples weigh more
        coef, rms = self._lsq(x, y, w, 0 if len(t) < 2 or np.ptp(x) == 0 else 1)
        if len(t) >= 12:
            c2, rms2 = self._lsq(x, y, w, 2)
            if rms2 < 0.5 * rms:          # curvature only when the data clearly show it
                coef, rms = c2, rms2
        p = float(coef[0])
        v = float(coef[1]) / 1e6 if len(coef) > 1 else 0.0
        a = float(coef[2]) / 1e12 if len(coef) > 2 else 0.0
        self._fit = (t_ref, p, v, a, rms, float(dmin))
        return self._fit

    @staticmethod
    def _lsq(x, y, w, degree):
        cols = [np.ones_like(x)]
        if degree >= 1:
            cols.append(x)
        if degree >= 2:
            cols.append(0.5 * x * x)
        A = np.stack(cols, axis=1)
        coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
        resid = y - A @ coef
        return coef, float(np.sqrt(np.mean(resid ** 2)))

    def offset_at(self, t_host):
        """Predicted offset (device − host, µs) at host time t_host (µs)."""
        f = self._solve()
        if f is None:
            raise ValueError("time sync: no samples yet")
        t_ref, p, v, a = f[:4]
        return trajectory_extrapolate(p, v, a, t_host - t_ref)

    def device_to_host(self, t_device):
        """Host time (µs) of a device timestamp, using the fitted offset (one fixed-point step)."""
        f = self._solve()
        if f is None:
            raise ValueError("time sync: no samples yet")
        t = t_device - f[1]
        return t_device - self.offset_at(t)

    def device_time_unix(self, t_device, now_unix=None, now_host_us=None):
        """A device timestamp (µs since its boot) as host wall time (Unix s), through the
        fitted offset and drift; None before the first sample. The host clock of the fit is
        the monotonic one (becomingone.util.times.monotonic_us), related to the wall clock
        now."""
        if self._solve() is None:
            return None
        now_unix = time.time() if now_unix is None else now_unix
        now_host_us = monotonic_us() if now_host_us is None else now_host_us
        return float(now_unix - (now_host_us - self.device_to_host(t_device)) / 1e6)

    def estimate(self):
        f = self._solve()
        if f is None:
            return {"samples": 0}
        t_ref, p, v, a, rms, dmin = f
        return {"samples": len(self.samples), "offset_us": p, "drift_ppm": v * 1e6,
                "accel_ppm_per_s": a * 1e12, "rms_us": rms, "min_delay_us": dmin,
                "rejected": self.rejected, "discarded": self.discarded}


# When the host sends TIME_SYNC to a device: at its first HELLO, then every second until the
# estimator holds TIME_SYNC_QUICK samples, then every TIME_SYNC_EVERY_S seconds.
TIME_SYNC_QUICK = 8
TIME_SYNC_EVERY_S = 10.0
