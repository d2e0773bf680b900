"""What a handler returns or raises besides a JSON-able value: ApiError (an HTTP error status
with a message), Raw (a prepared non-JSON body); and the JSON encoding of every response."""
import json
import math

__all__ = ["ApiError", "Raw", "to_jsonable", "dumps"]


class ApiError(Exception):
    """An HTTP error response: status code, message, and the Allow header for a 405."""
    def __init__(self, status, message, allow=None):
        super().__init__(message)
        self.status, self.message, self.allow = status, message, allow


class Raw:
    """A non-JSON response (the metrics text, the OpenAPI document as prepared bytes)."""
    __slots__ = ("status", "body", "content_type")

    def __init__(self, body, content_type, status=200):
        self.status, self.body, self.content_type = status, body, content_type


def to_jsonable(v):
    """numpy values, complex numbers ([re, im]), tuples and non-finite floats (null) -> JSON."""
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, complex):
        return [to_jsonable(v.real), to_jsonable(v.imag)]
    if hasattr(v, "tolist"):
        return to_jsonable(v.tolist())
    return str(v)


def _default(v):
    if isinstance(v, complex):
        return [v.real, v.imag]
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError("not JSON: %r" % type(v))


def dumps(obj):
    """Compact JSON bytes. Fast path: the json module with numpy/complex handled on the side;
    when that meets a non-finite float or an odd key it goes through to_jsonable (null)."""
    try:
        return json.dumps(obj, default=_default, allow_nan=False, separators=(",", ":")).encode()
    except (ValueError, TypeError):
        return json.dumps(to_jsonable(obj), separators=(",", ":")).encode()
