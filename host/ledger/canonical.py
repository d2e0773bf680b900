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
import json
import json.encoder
import math

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


_TEMPLATES = {}        # keys tuple (insertion order) -> (keys in sorted order, "%s" template)
_TEMPLATES_MAX = 512
_eba = json.encoder.encode_basestring_ascii
_int_repr, _float_repr = int.__repr__, float.__repr__


def _template(keys):
    """For a flat dict with these keys: its keys sorted and the text with a %s per value."""
    if not all(type(k) is str and (k.isascii() or _is_lone_surrogate_free(k)) for k in keys):
        return None
    order = sorted(keys)
    text = "{" + ",".join(_eba(k).replace("%", "%%") + ":%s" for k in order) + "}"
    if len(_TEMPLATES) >= _TEMPLATES_MAX:
        _TEMPLATES.clear()
    t = _TEMPLATES[keys] = (order, text)
    return t


def _flat_dumps(d):
    """Canonical text of a dict whose values are all scalars (the common entry shape), built
    from a per-key-set template; None for anything else or anything to refuse/normalise (the
    full check then handles it)."""
    keys = tuple(d)
    t = _TEMPLATES.get(keys) or _template(keys)
    if t is None:
        return None
    vals = []
    add = vals.append
    for k in t[0]:
        v = d[k]
        tv = type(v)
        if tv is str:
            if not v.isascii() and not _is_lone_surrogate_free(v):
                return None
            add(_eba(v))
        elif tv is int:
            if v > INT_MAX or v < INT_MIN:
                return None
            add(_int_repr(v))
        elif tv is float:
            if v - v != 0.0:            # NaN or +-Infinity
                return None
            add(_float_repr(v) if v != 0.0 else "0.0")
        elif tv is bool:
            add("true" if v else "false")
        elif v is None:
            add("null")
        else:
            return None
    return t[1] % tuple(vals)


def dumps(value, path="data"):
    """Canonical JSON text (str, ASCII only) of `value`. A dict of scalars takes a template fast
    path whose output is byte-identical to the full check and encoder (property tested against
    tests/reference/ledger_ref.py); anything else,
    and every refusal, goes through the full check and the json encoder."""
    if type(value) is dict:
        text = _flat_dumps(value)
        if text is not None:
            return text
    return encode(canonicalize(value, path))


def check_timestamp(ts):
    """Entry timestamps are finite floats (Unix seconds); an int is converted, -0.0 -> 0.0."""
    if type(ts) is int:
        ts = float(ts)
    if type(ts) is not float or ts != ts or ts in (math.inf, -math.inf):
        raise CanonicalError("timestamp %r is not allowed (a finite float, Unix seconds)" % (ts,))
    return 0.0 if ts == 0.0 else ts
