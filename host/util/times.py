"""Times as users type them (`--since`, `--until`, `--at`, API query parameters, label files):
seconds since the epoch, ISO 8601 (UTC when no offset), `now`, or relative to now: -90s, -10m,
-2h, -1d; and back to a short UTC text."""
import datetime
import re
import time

from becomingone.errors import UserError


def parse_time(s, now=None):
    now = time.time() if now is None else now
    s = str(s).strip()
    if s == "now":
        return now
    m = re.fullmatch(r"-(\d+(?:\.\d+)?)([smhd])", s)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise UserError("bad time %r (allowed: epoch seconds, ISO 8601, now, -90s/-10m/-2h/-1d)" % s) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def fmt_time(t):
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def monotonic_us():
    """The host's monotonic clock in µs (receive times, TIME_SYNC, ingest lag)."""
    return time.monotonic_ns() // 1000
