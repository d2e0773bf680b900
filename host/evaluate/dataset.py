"""A dataset folder: index.json in the format of the shared CWRU subset, checked whole first.

    {"records": [{"record": 105, "condition": "inner_race", "sample_rate_hz": 12000,
                  "load_hp": 0, "fault_diameter_in": 0.007, "or_position": null,
                  "channels": {"DE": {"file": "data/105_DE_12k.npy",
                                      "scale_g_per_count": 0.000162...}, "FE": {...}}}, ...],
     "derived": [{"record": 97, "condition": "normal", "sample_rate_hz": 12000,
                  "files": {"DE": "data/97_DE_12k_DERIVED_decimated_part1.npy"}}]}

records[] hold integer counts (g = count * scale_g_per_count); derived[] hold float g. The
condition ``normal`` is healthy; every other condition is a fault. File paths are relative to
the folder. ``load_index(folder, channel)`` returns Items for the channel (records without it
are listed in ``skipped``); a missing index, malformed entry or missing file is a DatasetError
naming it, raised before anything runs.
"""
import json
import os

from becomingone.errors import UserError

HEALTHY = "normal"


class DatasetError(UserError):
    pass


class Item:
    """One recording of the dataset: what the evaluation needs to load and label it."""

    def __init__(self, record, condition, path, rate_hz, scale, derived, meta):
        self.record = record
        self.condition = condition
        self.path = path
        self.rate_hz = rate_hz
        self.scale = scale          # g per count, or None for float g
        self.derived = derived
        self.meta = meta            # load_hp, fault_diameter_in, or_position, notes

    @property
    def healthy(self):
        return self.condition == HEALTHY

    @property
    def key(self):
        return "%s%s" % (self.record, "d" if self.derived else "")

    def __repr__(self):
        return "<Item %s %s %s>" % (self.record, self.condition, self.path)


def _need(entry, key, where, kinds, index):
    if key not in entry:
        raise DatasetError("%s: %s has no %r" % (index, where, key))
    v = entry[key]
    if not isinstance(v, kinds) or isinstance(v, bool):
        raise DatasetError("%s: %s %r = %r is not %s" % (
            index, where, key, v, " or ".join(k.__name__ for k in (
                kinds if isinstance(kinds, tuple) else (kinds,)))))
    return v


def load_index(folder, channel="DE", records=None):
    """(items, skipped) for one channel; ``records``: only these record numbers (a set)."""
    folder = str(folder)
    index = os.path.join(folder, "index.json")
    if not os.path.isdir(folder):
        raise DatasetError("dataset %s: no such folder (it must hold index.json)" % folder)
    try:
        with open(index, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DatasetError("dataset %s: no index.json there (format: records[] with "
                           "channels.<CH>.file and scale_g_per_count, derived[] with files.<CH>)"
                           % folder) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError("%s is not valid JSON: %s" % (index, e)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("records", []), list) or \
            not isinstance(doc.get("derived", []), list):
        raise DatasetError("%s: expected an object with lists `records` and `derived`" % index)
    items, skipped, missing = [], [], []
    seen = set()
    for kind in ("records", "derived"):
        for i, e in enumerate(doc.get(kind, [])):
            where = "%s[%d]" % (kind, i)
            if not isinstance(e, dict):
                raise DatasetError("%s: %s is not an object" % (index, where))
            rec = _need(e, "record", where, (int, str), index)
            where = "%s (record %s)" % (where, rec)
            cond = _need(e, "condition", where, str, index)
            rate = _need(e, "sample_rate_hz", where, (int, float), index)
            if not rate > 0:
                raise DatasetError("%s: %s sample_rate_hz = %r must be > 0" % (index, where, rate))
            if records is not None and rec not in records and str(rec) not in records:
                continue
            derived = kind == "derived"
            if derived:
                files = _need(e, "files", where, dict, index)
                if channel not in files:
                    skipped.append({"record": rec, "derived": True,
                                    "reason": "no %s channel (has %s)" % (channel, ", ".join(sorted(files)) or "none")})
                    continue
                rel = files[channel]
                scale = None
            else:
                chans = _need(e, "channels", where, dict, index)
                if channel not in chans:
                    skipped.append({"record": rec, "derived": False,
                                    "reason": "no %s channel (has %s)" % (channel, ", ".join(sorted(chans)) or "none")})
                    continue
                ch = chans[channel]
                if not isinstance(ch, dict):
                    raise DatasetError("%s: %s channels.%s is not an object" % (index, where, channel))
                rel = _need(ch, "file", where + " channels." + channel, str, index)
                scale = _need(ch, "scale_g_per_count", where + " channels." + channel,
                              (int, float), index)
            if not isinstance(rel, str) or not rel:
                raise DatasetError("%s: %s file name %r is not a string" % (index, where, rel))
            path = os.path.normpath(os.path.join(folder, rel))
            if not os.path.isfile(path):
                missing.append("%s (%s)" % (path, where))
                continue
            key = (str(rec), derived)
            if key in seen:
                raise DatasetError("%s: record %s appears twice in %s" % (index, rec, kind))
            seen.add(key)
            meta = {k: e.get(k) for k in ("load_hp", "fault_diameter_in", "or_position", "rpm")}
            meta["notes"] = e.get("notes") or []
            items.append(Item(rec, cond, path, float(rate), scale, derived, meta))
    if missing:
        raise DatasetError("%s names %d file(s) that do not exist: %s" % (
            index, len(missing), "; ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")))
    if not items:
        raise DatasetError("%s: no record with a %s channel%s" % (
            index, channel, " among %s" % sorted(records) if records else ""))
    return items, skipped


def write_index(folder, records=(), derived=()):
    """Write an index.json (tests and synthetic datasets): lists of entry dicts as above."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "index.json"), "w") as f:
        json.dump({"records": list(records), "derived": list(derived)}, f, indent=1)
