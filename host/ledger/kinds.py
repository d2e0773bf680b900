"""Entry kinds: data["kind"] plus the fields each kind requires (docs/LEDGER.md §5).
Extra fields are allowed (any canonical JSON value); required fields are type-checked."""
from becomingone.errors import LedgerError, UserError

_NUM = (int, float)

# kind -> {field: allowed types}
KINDS = {
    "genesis": {"origin": (str,), "version": (int,)},
    "action": {"action": (str,)},
    "pulse": {"device": (int,), "beat": (int,), "beats": (int,)},
    "flow": {"flow": (str,), "result": (dict, list, str, int, float, bool, type(None))},
    "witness": {"device": (int,), "layer": (str,)},
    "collapse": {"coherence": _NUM},
    "config": {"target": (str,), "version": (int,), "change": (dict,)},
}

WITNESS_LAYERS = ("micro", "meso", "macro", "meta")


class KindError(LedgerError):
    """An entry's kind is unknown or its data does not fit the kind."""


def build(kind, data):
    """Return the data dict {"kind": kind, **data} after checking the kind's required fields."""
    if kind not in KINDS or kind == "genesis":
        raise KindError("unknown entry kind %r (allowed: %s)"
                        % (kind, ", ".join(k for k in KINDS if k != "genesis")))
    if type(data) is not dict:
        raise KindError("entry data must be a dict, not %s" % type(data).__name__)
    if "kind" in data and data["kind"] != kind:
        raise KindError("data['kind'] is %r but the entry kind is %r" % (data["kind"], kind))
    for field, types in KINDS[kind].items():
        if field not in data:
            raise KindError("%s entry needs field %r (required: %s)"
                            % (kind, field, ", ".join(KINDS[kind])))
        v = data[field]
        if type(v) not in types or (type(v) is bool and bool not in types):
            raise KindError("%s entry field %r must be %s, not %s"
                            % (kind, field, "/".join(t.__name__ for t in types), type(v).__name__))
    if kind == "witness" and data["layer"] not in WITNESS_LAYERS:
        raise KindError("witness layer %r (allowed: %s)" % (data["layer"], ", ".join(WITNESS_LAYERS)))
    out = {"kind": kind}
    out.update(data)
    return out


class PulseRecorder:
    """Turns per-beat pulse values into `pulse` entries at a configurable rate.

    every=1 writes one entry per beat; every=N writes a summary of N beats: the device, the
    last beat number, the count of beats, and for every numeric field the mean/min/max over
    the window. `sink(kind, data)` is Ledger.append or Ledger.submit."""

    def __init__(self, sink, device, every=1):
        if type(every) is not int or every < 1:
            raise UserError("pulse summary rate must be an integer >= 1 beats, got %r" % (every,))
        self.sink, self.device, self.every = sink, device, every
        self._n = 0
        self._acc = {}

    def beat(self, beat, values):
        """values: {name: number}. Returns whatever sink returned when an entry was written."""
        self._n += 1
        for k, v in values.items():
            a = self._acc.get(k)
            if a is None:
                self._acc[k] = [v, v, v]
            else:
                a[0] += v
                if v < a[1]:
                    a[1] = v
                if v > a[2]:
                    a[2] = v
        if self._n < self.every:
            return None
        n = self._n
        data = {"device": self.device, "beat": beat, "beats": n}
        for k, (s, lo, hi) in self._acc.items():
            data[k] = s if n == 1 else {"mean": s / n, "min": lo, "max": hi}
        self._n = 0
        self._acc = {}
        return self.sink("pulse", data)
