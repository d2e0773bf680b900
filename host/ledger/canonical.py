"""Canonical JSON and the entry hash (docs/LEDGER.md §1-§2 pin every rule).

Canonical JSON = ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=True, allow_nan=False)`` of a value made only of:

- dict with str keys, list, str, int in [-2**63, 2**63 - 1], float (finite), bool, None;
- floats are written by ``float.__repr__`` (shortest round-trip digits); ``-0.0`` is
  normalised to ``0.0``; an integral float stays a float (``2.0``), ints never gain a point;
- strings are written ASCII-only: every code point >= 0x7F as ``\\uXXXX`` (lowercase hex,
  UTF-16 surrogate pairs above U+FFFF); lone surrogates are refused; no Unicode normalisation.

Anything else (NaN, +-Infinity, bytes, tuples, sets, numpy scalars, subclasses of the allowed
types, non-str keys, ints out of range) raises CanonicalError naming the path of the bad value.
"""
import hashlib
import json
import math
import re

INT_MIN = -(2 ** 63)
INT_MAX = 2 ** 63 - 1
ZERO_HASH = "0" * 64

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                            allow_nan=False, check_circular=False)
try:  # the C encoder with the same settings, built once (JSONEncoder.encode rebuilds it per call)
    from json.encoder import c_make_encoder as _cme, encode_basestring_ascii as _eba
    _c_encode = _cme(None, None, _eba, None, ":", ",", True, False, False)
except (ImportError, TypeError):  # pragma: no cover - pure-Python json
    _c_encode = None


def encode(value):
    """json text of an already validated value (canonical settings)."""
    if _c_encode is not None:
        return "".join(_c_encode(value, 0))
    return _encoder.encode(value)


class CanonicalError(ValueError):
    """A value cannot be written as canonical JSON; the message names its path."""


def _is_lone_surrogate_free(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _check(value, path, depth=0):
    """Walk `value`; raise CanonicalError for anything not allowed.
    Returns True when a -0.0 was seen (the caller then normalises).
    Scalars inside dicts and lists are checked inline (this runs for every entry)."""
    t = type(value)
    if t is dict:
        if depth > 64:
            raise CanonicalError("%s: nesting deeper than 64 levels" % path)
        neg = False
        for k, v in value.items():
            if type(k) is not str:
                raise CanonicalError("%s: key %r is a %s (only str keys are allowed)" % (path, k, type(k).__name__))
            if not k.isascii() and not _is_lone_surrogate_free(k):
                raise CanonicalError("%s: key contains a lone surrogate" % path)
            tv = type(v)
            if tv is str:
                if v.isascii():
                    continue
            elif tv is int:
                if INT_MIN <= v <= INT_MAX:
                    continue
            elif tv is float:
                if v - v == 0.0 and v != 0.0:
                    continue
            elif tv is bool or v is None:
                continue
            if _check(v, path + "." + k, depth + 1):
                neg = True
        return neg
    if t is list:
        if depth > 64:
            raise CanonicalError("%s: nesting deeper than 64 levels" % path)
        neg = False
        for i, v in enumerate(value):
            tv = type(v)
            if (tv is int and INT_MIN <= v <= INT_MAX) or (tv is float and v - v == 0.0 and v != 0.0):
                continue
            if _check(v, "%s[%d]" % (path, i), depth + 1):
                neg = True
        return neg
    if t is str:
        if not value.isascii() and not _is_lone_surrogate_free(value):
            raise CanonicalError("%s: string contains a lone surrogate (only valid Unicode text is allowed)" % path)
        return False
    if t is int:
        if value < INT_MIN or value > INT_MAX:
            raise CanonicalError("%s: integer %d out of range (allowed: -2**63 .. 2**63-1)" % (path, value))
        return False
    if t is float:
        if value != value or value in (math.inf, -math.inf):
            raise CanonicalError("%s: %r is not allowed (NaN and Infinity have no JSON form)" % (path, value))
        return value == 0.0 and math.copysign(1.0, value) < 0
    if value is None or t is bool:
        return False
    if t in (bytes, bytearray, memoryview):
        raise CanonicalError("%s: bytes are not allowed (write them as a hex string)" % path)
    if t is tuple:
        raise CanonicalError("%s: tuple is not allowed (use a list)" % path)
    hint = ""
    if hasattr(value, "item") and hasattr(value, "dtype"):
        hint = " (numpy scalar: use .item())"
    raise CanonicalError("%s: type %s is not allowed%s (allowed: dict with str keys, list, str, "
                         "int, float, bool, None)" % (path, t.__name__, hint))


def _normalise_neg_zero(value):
    t = type(value)
    if t is float:
        return 0.0 if value == 0.0 else value
    if t is dict:
        return {k: _normalise_neg_zero(v) for k, v in value.items()}
    if t is list:
        return [_normalise_neg_zero(v) for v in value]
    return value


def canonicalize(value, path="data"):
    """Validate `value` and return the value to hash (a copy only when -0.0 had to be normalised)."""
    if _check(value, path):
        return _normalise_neg_zero(value)
    return value


_SCALARS = frozenset((str, int, float, bool, type(None)))
_CONTAINERS = _SCALARS | {dict, list}
_STR_KEYS = frozenset((str,))
# after a fast encode, either of these sends the value through the full check (which either
# accepts it with the same text or names the problem): a surrogate escape (lone surrogates are
# refused), a -0.0 (normalised); searched only when the text contains "\\ud" or "-0.0"
_FAST_RECHECK = re.compile(r"\\ud[89a-f]|-0\.0(?![0-9])")


def _ints_in_range(values):
    for v in values:
        if type(v) is int and (v > INT_MAX or v < INT_MIN):
            return False
    return True


def _fast_dict(d, depth):
    """True when `d` is made only of exact dicts (str keys), lists and scalars, at most 32
    deep: then the C encoder's text is canonical unless _FAST_RECHECK matches it (or it
    raises for NaN/Infinity). Anything else goes through _check."""
    if depth > 32:
        return False
    if d and set(map(type, d)) != _STR_KEYS:
        return False
    vt = set(map(type, d.values()))
    if int in vt and not _ints_in_range(d.values()):
        return False
    if vt <= _SCALARS:
        return True
    if not vt <= _CONTAINERS:
        return False
    for v in d.values():
        t = type(v)
        if (t is dict and not _fast_dict(v, depth + 1)) or (t is list and not _fast_list(v, depth + 1)):
            return False
    return True


def _fast_list(a, depth):
    if depth > 32:
        return False
    vt = set(map(type, a))
    if int in vt and not _ints_in_range(a):
        return False
    if vt <= _SCALARS:
        return True
    if not vt <= _CONTAINERS:
        return False
    for v in a:
        t = type(v)
        if (t is dict and not _fast_dict(v, depth + 1)) or (t is list and not _fast_list(v, depth + 1)):
            return False
    return True


def dumps(value, path="data"):
    """Canonical JSON text (str, ASCII only) of `value`. Common values (dicts of plain types)
    take a pre-checked fast path whose output is byte-identical to reference_dumps (property
    tested); anything unusual, and every refusal, goes through the full check."""
    if type(value) is dict and _c_encode is not None and _fast_dict(value, 0):
        try:
            text = "".join(_c_encode(value, 0))
        except ValueError:          # NaN / Infinity: the full check names the path
            text = None
        if text is not None and (("-0.0" not in text and "\\ud" not in text)
                                 or _FAST_RECHECK.search(text) is None):
            return text
    return encode(canonicalize(value, path))


def reference_dumps(value, path="data"):
    """The full check then the encoder, without the fast path (the reference for tests)."""
    return encode(canonicalize(value, path))


def hash_input(index, timestamp, data_json, previous_hash):
    """The exact bytes hashed for an entry: canonical JSON of
    {"data", "index", "previous_hash", "timestamp"}; `data_json` is the canonical text of data."""
    return ('{"data":%s,"index":%d,"previous_hash":"%s","timestamp":%s}'
            % (data_json, index, previous_hash, float.__repr__(timestamp))).encode("ascii")


def entry_hash(index, timestamp, data_json, previous_hash):
    """SHA3-256 hex of hash_input(...)."""
    return hashlib.sha3_256(hash_input(index, timestamp, data_json, previous_hash)).hexdigest()


def check_timestamp(ts):
    """Entry timestamps are finite floats (Unix seconds); an int is converted, -0.0 -> 0.0."""
    if type(ts) is int:
        ts = float(ts)
    if type(ts) is not float or ts != ts or ts in (math.inf, -math.inf):
        raise CanonicalError("timestamp %r is not allowed (a finite float, Unix seconds)" % (ts,))
    return 0.0 if ts == 0.0 else ts
