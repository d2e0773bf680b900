"""The device table that `status`, `device list` and `emulate`'s live view share: one row per
device from its decoded state (becomingone.devices.state), as a rich Table that fits 100
columns."""
from rich import box
from rich.table import Table

from becomingone.devices.state import device_state

__all__ = ["COLUMNS", "device_rows", "device_table", "states_of"]

COLUMNS = ("device", "board", "online", "decision", "latched", "threat", "C", "late ms",
           "frames", "lost", "seen UTC")
_STYLE = {"ALERT": "bold dark_orange", "QUARANTINE": "bold red"}


def states_of(sessions):
    """Decoded states from status()["sessions"] (a dict by device id) or a list of summaries."""
    rows = sessions.values() if isinstance(sessions, dict) else (sessions or [])
    return sorted((device_state(s) for s in rows), key=lambda x: x["device_id"])


def _f(v, fmt):
    return "-" if v is None else fmt % v


def device_rows(states):
    """One tuple of cell texts per state, in COLUMNS order."""
    out = []
    for x in states:
        out.append((str(x["device_id"]), x["board"] or "?",
                    "yes" if x["online"] else "no", x["decision"] or "-",
                    "-" if x["quarantined"] is None else ("YES" if x["quarantined"] else "no"),
                    _f(x["threat"], "%.3f"), _f(x["coherence"], "%.3f"),
                    _f(None if x["lateness_s"] is None else x["lateness_s"] * 1e3, "%.2f"),
                    _f(x["frames"], "%d"), _f(x["lost"], "%d"),
                    (x["last_seen"] or "-")[11:19] or "-"))
    return out


def device_table(states, title=None, caption=None):
    t = Table(title=title, caption=caption, expand=False, pad_edge=False, box=box.SIMPLE_HEAD,
              padding=(0, 0))
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("board", "decision", "online", "latched") else "right",
                     no_wrap=True)
    for x, row in zip(states, device_rows(states)):
        t.add_row(*row, style=_STYLE.get(x["decision"]))
    return t
