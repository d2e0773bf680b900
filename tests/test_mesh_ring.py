"""Consistent-hashing ring (host/mesh/ring.py): ET Eq 28 weighted by the THHE homeostat."""
import pytest

from becomingone.errors import UserError
from becomingone.mesh.ring import Ring, key_position, parse_cells

KEYS = ["key-%d" % i for i in range(20000)]


def test_equal_cells_get_about_equal_shares():
    ring = Ring(["a", "b", "c", "d", "e"])
    counts = {c: 0 for c in ring.cells}
    for k in KEYS:
        counts[ring.get(k)] += 1
    for c, n in counts.items():
        assert 0.13 < n / len(KEYS) < 0.27, counts
    assert sum(ring.shares().values()) == pytest.approx(1.0)


def test_hot_cell_gets_fewer_keys_and_movement_is_bounded():
    ring = Ring({c: (1.0, 0.0) for c in "abcdefgh"})
    before = {k: ring.get(k) for k in KEYS}
    share_a = ring.shares()["a"]
    moved_space = ring.set_load("a", 3.0)              # weight 1 -> 1/4
    assert ring.describe()["a"]["vnodes"] == 25
    after = {k: ring.get(k) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    # every moved key left the hot cell; nothing moved between the other cells
    assert moved and all(before[k] == "a" and after[k] != "a" for k in moved)
    # the key space that moved is exactly the hot cell's lost share (the minimum possible)
    assert moved_space == pytest.approx(share_a - ring.shares()["a"], abs=1e-12)
    assert len(moved) / len(KEYS) == pytest.approx(moved_space, abs=0.01)
    assert ring.shares()["a"] < 0.5 * share_a
    # cooling down again moves the same keys back
    assert ring.set_load("a", 0.0) == pytest.approx(moved_space, abs=1e-12)
    assert {k: ring.get(k) for k in KEYS} == before


def test_adding_and_removing_a_cell_moves_only_its_keys():
    ring = Ring(["a", "b", "c"])
    before = {k: ring.get(k) for k in KEYS}
    moved_space = ring.add("d")
    after = {k: ring.get(k) for k in KEYS}
    assert all(after[k] == "d" for k in KEYS if before[k] != after[k])
    assert moved_space == pytest.approx(ring.shares()["d"], abs=1e-12)
    ring.remove("d")
    assert {k: ring.get(k) for k in KEYS} == before


def test_get_n_gives_distinct_cells_starting_with_the_owner():
    ring = Ring({"a": 1.0, "b": 2.0, "c": (1.0, 1.0), "d": 0.5})
    for k in KEYS[:500]:
        got = ring.get_n(k, 3)
        assert len(set(got)) == 3 and got[0] == ring.get(k)
        assert sorted(ring.get_n(k, 4)) == ["a", "b", "c", "d"]
    with pytest.raises(UserError, match="1 <= n <= 4"):
        ring.get_n("x", 5)


def test_placement_is_deterministic_and_uses_blake2b():
    a = Ring(["x", "y", "z"])
    b = Ring(["z", "y", "x"])
    assert [a.get(k) for k in KEYS[:300]] == [b.get(k) for k in KEYS[:300]]
    import hashlib
    assert key_position("k") == int.from_bytes(
        hashlib.blake2b(b"k", digest_size=8, person=b"bo-ring").digest(), "big")
    assert key_position(b"k") == key_position("k")


def test_bad_input_is_named():
    with pytest.raises(UserError, match="capacity"):
        Ring({"a": (0.0, 0.0)})
    with pytest.raises(UserError, match="load"):
        Ring({"a": (1.0, -1.0)})
    with pytest.raises(UserError, match="no cell 'q'"):
        Ring(["a"]).set_load("q", 1.0)
    with pytest.raises(UserError, match="already"):
        Ring(["a"]).add("a")
    with pytest.raises(UserError, match="no cells"):
        Ring().get("k")
    with pytest.raises(UserError, match="str or bytes"):
        Ring(["a"]).get(3)
    with pytest.raises(UserError, match="name=capacity"):
        parse_cells("a=big")
    with pytest.raises(UserError, match="twice"):
        parse_cells("a,a")
    r = parse_cells("a=2:1, b")
    assert r.describe() == {"a": {"capacity": 2.0, "load": 1.0, "vnodes": 100},
                            "b": {"capacity": 1.0, "load": 0.0, "vnodes": 100}}


def test_devices_follow_the_ring():
    ring = Ring(["a", "b"])
    got = ring.assign_devices(range(1, 201))
    assert set(got.values()) == {"a", "b"} and got[7] == ring.get("device:7")
