"""One ledger entry as returned by the Ledger (docs/LEDGER.md §2, §7)."""
import json


class Entry:
    """One ledger entry. `hash` and `previous_hash` are 64-char lowercase hex."""

    __slots__ = ("index", "timestamp", "data_json", "previous_hash", "hash", "_data")

    def __init__(self, index, timestamp, data_json, previous_hash, hash, data=None):
        self.index, self.timestamp, self.data_json = index, timestamp, data_json
        self.previous_hash, self.hash, self._data = previous_hash, hash, data

    @property
    def data(self):
        if self._data is None:
            self._data = json.loads(self.data_json)
        return self._data

    @property
    def kind(self):
        return self.data.get("kind")

    def to_dict(self):
        return {"index": self.index, "timestamp": self.timestamp, "data": self.data,
                "previous_hash": self.previous_hash, "hash": self.hash}

    def to_json(self):
        """Canonical JSON line of the whole entry (the export format, docs/LEDGER.md §7)."""
        return ('{"data":%s,"hash":"%s","index":%d,"previous_hash":"%s","timestamp":%s}'
                % (self.data_json, self.hash, self.index, self.previous_hash,
                   float.__repr__(self.timestamp)))

    def __repr__(self):
        return "Entry(%d, %s, %s)" % (self.index, self.kind, self.hash[:16])
