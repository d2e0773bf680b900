"""Canonical JSON template fast path (becomingone.ledger.canonical.dumps) == the reference encoder (full check,
then json) == the independent encoder of tools/verify_export.py, on random data; refusals are
the same errors."""
import importlib.util
import math
import os

import pytest
from hypothesis import given, settings, strategies as st

from becomingone.ledger import CanonicalError, canonical
from tests.reference.ledger_ref import reference_dumps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("verify_export", os.path.join(ROOT, "tools", "verify_export.py"))
verify_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(verify_export)

INT_EDGES = st.sampled_from([2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, 10 ** 18, -10 ** 19, 0])
text = st.text(alphabet=st.characters(codec=None), max_size=12)  # all code points incl. lone surrogates
keys = st.one_of(st.text(max_size=6), st.sampled_from(["kind", "é", "😀", "\x7f", "-0.0", "\\ud800"]))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70), INT_EDGES,
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 0.0, 1e16, 1e-05, 5e-324, -0.05]),
    text, st.sampled_from(["-0.0", "\ud800", "\\ud800", "a\udc80b", "😀"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)
dicts = st.dictionaries(keys, values, max_size=8)


def _outcome(fn, v):
    try:
        return "ok", fn(v)
    except CanonicalError as e:
        return "error", str(e)


def _independent(v):
    """tools/verify_export.py's encoder, with the ledger's -0.0 normalisation applied first."""
    def norm(x):
        if type(x) is float and x == 0.0:
            return 0.0
        if type(x) is dict:
            return {k: norm(y) for k, y in x.items()}
        if type(x) is list:
            return [norm(y) for y in x]
        return x
    return verify_export.canon(norm(v))


@settings(max_examples=600, deadline=None)
@given(dicts)
def test_fast_path_equals_reference_on_random_data(v):
    fast = _outcome(canonical.dumps, v)
    ref = _outcome(reference_dumps, v)
    assert fast == ref
    if fast[0] == "ok":
        assert fast[1].isascii()
        assert _independent(v) == fast[1]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.floats(allow_nan=False, allow_infinity=False), max_size=6))
def test_float_dicts_match_the_independent_encoder(v):
    assert canonical.dumps(v) == reference_dumps(v) == _independent(v)


@pytest.mark.parametrize("bad, words", [
    ({"x": float("nan")}, "data.x: nan is not allowed"),
    ({"x": [1, {"y": -math.inf}]}, "data.x[1].y: -inf is not allowed"),
    ({"x": 2 ** 63}, "data.x: integer 9223372036854775808 out of range"),
    ({"x": [-(2 ** 63) - 1]}, "data.x[0]: integer -9223372036854775809 out of range"),
    ({"x": "a\ud800"}, "data.x: string contains a lone surrogate"),
    ({"\udc00": 1}, "data: key contains a lone surrogate"),
    ({"x": (1, 2)}, "data.x: tuple is not allowed"),
    ({1: "a"}, "data: key 1 is a int"),
    ({"x": b"ab"}, "data.x: bytes are not allowed"),
])
def test_fast_path_refuses_like_the_reference(bad, words):
    with pytest.raises(CanonicalError) as e1:
        canonical.dumps(bad)
    with pytest.raises(CanonicalError) as e2:
        reference_dumps(bad)
    assert str(e1.value) == str(e2.value) and words in str(e1.value)


def test_fast_path_normalises_negative_zero_and_keeps_lookalike_strings():
    assert canonical.dumps({"a": -0.0, "b": "-0.0", "c": -0.05}) == '{"a":0.0,"b":"-0.0","c":-0.05}'
    assert canonical.dumps({"e": "😀", "s": "\\ud800"}) == '{"e":"\\ud83d\\ude00","s":"\\\\ud800"}'
    deep = {"x": 1}
    for _ in range(70):
        deep = {"d": deep}
    with pytest.raises(CanonicalError, match="nesting deeper than 64"):
        canonical.dumps(deep)
