"""Per-device keys for frame authentication (truncated HMAC-SHA256, shared/auth.py).

File: JSON (`.json`) or YAML (`.yaml`/`.yml`), a mapping device id -> key as 64 hex digits
(32 bytes); either at the top level or under `devices:`:

    {"devices": {"17": "9f86d0...", "18": "..."}}

The file must not be readable or writable by group or others (mode 0600, like ssh keys);
a looser mode is refused. Writes are atomic (temp file + rename) and created 0600.
Keys are never logged, printed or put in an error message: listings show a fingerprint
(the first 8 hex digits of SHA-256 of the key), which cannot be turned back into the key.
"""
import hashlib
import json
import os
import stat

import yaml

from becomingone.errors import UserError
from becomingone.util.atomic import atomic_write

__all__ = ["Keystore", "parse_device_id", "fingerprint"]


def parse_device_id(v):
    try:
        d = int(v)
    except (TypeError, ValueError):
        raise UserError("device id must be an integer 1..65535 (got %r)" % (v,)) from None
    if not 1 <= d <= 65535:
        raise UserError("device id must be an integer 1..65535 (got %d)" % d)
    return d


def fingerprint(key):
    return hashlib.sha256(key).hexdigest()[:8]


def _parse_key(device_id, v):
    if isinstance(v, (bytes, bytearray)):
        k = bytes(v)
    else:
        try:
            k = bytes.fromhex(str(v))
        except ValueError:
            raise UserError("keystore: the key of device %d is not hex (allowed: 64 hex digits)"
                            % device_id) from None
    if len(k) != 32:
        raise UserError("keystore: the key of device %d has %d bytes (allowed: exactly 32 bytes "
                        "= 64 hex digits)" % (device_id, len(k)))
    return k


class Keystore:
    """The device keys file (JSON or YAML, mode 0600): owns the keys, written atomically;
    never shows a key (listing() gives fingerprints). Raises UserError for a loose mode, a
    damaged file or a bad key or device id."""
    def __init__(self, path=None):
        self.path = path
        self._keys = {}
        if path and os.path.exists(path):
            self.load()

    def __repr__(self):
        return "<Keystore %s: %d keys>" % (self.path, len(self._keys))

    def _yaml(self):
        return bool(self.path) and self.path.endswith((".yaml", ".yml"))

    def load(self):
        st = os.stat(self.path)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UserError("keystore %s is accessible to group/others (mode %o): run "
                            "`chmod 600 %s` (allowed: 0600)"
                            % (self.path, stat.S_IMODE(st.st_mode), self.path))
        with open(self.path, "r", encoding="utf-8") as f:
            text = f.read()
        try:
            data = yaml.safe_load(text) if self._yaml() else json.loads(text or "{}")
        except (ValueError, yaml.YAMLError) as e:
            raise UserError("keystore %s is not valid %s (%s)"
                            % (self.path, "YAML" if self._yaml() else "JSON",
                               str(e).split("\n")[0])) from None
        if data is None:
            data = {}
        if isinstance(data, dict) and "devices" in data:
            data = data["devices"] or {}
        if not isinstance(data, dict):
            raise UserError("keystore %s must map device id -> key hex (optionally under "
                            "'devices:')" % self.path)
        keys = {}
        for k, v in data.items():
            d = parse_device_id(k)
            keys[d] = _parse_key(d, v)
        self._keys = keys
        return self

    def save(self):
        if not self.path:
            raise UserError("keystore has no file (give --keystore PATH)")
        data = {"devices": {str(d): k.hex() for d, k in sorted(self._keys.items())}}
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        with atomic_write(self.path, mode=0o600, fsync=True) as f:
            if self._yaml():
                yaml.safe_dump(data, f, sort_keys=True)
            else:
                json.dump(data, f, indent=1, sort_keys=True)

    def get(self, device_id):
        return self._keys.get(device_id)

    def __contains__(self, device_id):
        return device_id in self._keys

    def __len__(self):
        return len(self._keys)

    def device_ids(self):
        return sorted(self._keys)

    def add(self, device_id, key=None, replace=False):
        """Add a key (32 bytes or 64 hex digits; a random one when None) and save.
        Returns the key bytes (for provisioning a board; never print them)."""
        d = parse_device_id(device_id)
        if d in self._keys and not replace:
            raise UserError("device %d already has a key (`becomingone device keys add %d --replace` "
                            "to change it)" % (d, d))
        k = os.urandom(32) if key is None else _parse_key(d, key)
        self._keys[d] = k
        if self.path:
            self.save()
        return k

    def remove(self, device_id):
        d = parse_device_id(device_id)
        if self._keys.pop(d, None) is None:
            raise UserError("device %d has no key" % d)
        if self.path:
            self.save()

    def listing(self):
        return [{"device_id": d, "fingerprint": fingerprint(k)} for d, k in sorted(self._keys.items())]
