"""Versioned T_global map (host/mesh/aggregate.py) and its anti-entropy over mutual TLS."""
import asyncio
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from becomingone.mesh.aggregate import AggregateError, VersionedAggregate
from becomingone.mesh.antientropy import AntiEntropy
from becomingone.mesh.tls import init_mesh

CELLS = ["c0", "c1", "c2", "c3"]


def _keys():
    priv = {c: Ed25519PrivateKey.generate() for c in CELLS}
    return priv, {c: k.public_key() for c, k in priv.items()}


def test_weights_follow_devices_and_sum_to_one():
    priv, pub = _keys()
    aggs = {c: VersionedAggregate(c, priv[c], pub, epoch_ms=1) for c in CELLS}
    vals = {"c0": (0.5 + 0.1j, 3), "c1": (-0.2 + 0.4j, 1), "c2": (0.9j, 0), "c3": (0.3, 4)}
    ents = [aggs[c].publish(v, n, now=0.0) for c, (v, n) in vals.items()]
    a = aggs["c0"]
    assert a.merge(ents, now=0.0) == 3
    t, w = a.t_global(now=1.0)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w == {"c0": 3 / 8, "c1": 1 / 8, "c2": 0.0, "c3": 4 / 8}
    assert t == pytest.approx(sum(w[c] * vals[c][0] for c in CELLS))
    assert a.coherence(now=1.0) == pytest.approx(abs(t) ** 2)


def test_merge_is_idempotent_and_order_free_with_duplicates():
    priv, pub = _keys()
    src = {c: VersionedAggregate(c, priv[c], pub, epoch_ms=5) for c in CELLS}
    history = []
    rng = random.Random(1)
    for _ in range(5):
        for c in CELLS:
            history.append(src[c].publish(complex(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)),
                                          rng.randint(0, 5), now=0.0))
    results = []
    for seed in range(4):
        order = history + history[: 7]            # duplicates and stale re-deliveries
        random.Random(seed).shuffle(order)
        r = VersionedAggregate("observer", None, pub)
        r.merge(order, now=0.0)
        r.merge(order, now=0.0)                   # the whole history again: nothing changes
        results.append((r.digest(), r.t_global(now=0.0)))
    assert all(x == results[0] for x in results)
    assert {o: v[1] for o, v in results[0][0].items()} == {c: 5 for c in CELLS}


def test_restart_wins_ttl_expires_and_forgeries_are_refused():
    priv, pub = _keys()
    a = VersionedAggregate("c0", priv["c0"], pub, ttl=10.0, epoch_ms=100)
    b1 = VersionedAggregate("c1", priv["c1"], pub, epoch_ms=100)
    for _ in range(3):
        e_old = b1.publish(0.5, 2, now=0.0)
    b2 = VersionedAggregate("c1", priv["c1"], pub, epoch_ms=200)    # restarted: counter from 1
    e_new = b2.publish(-0.5, 2, now=0.0)
    assert a.merge([e_new, e_old], now=0.0) == 1
    assert a.entries["c1"]["re"] == -0.5
    a.publish(0.1, 1, now=0.0)
    assert set(a.t_global(now=5.0)[1]) == {"c0", "c1"}
    assert a.t_global(now=10.5) == (0j, {})                         # both expired
    # forged value for c1 (signed by someone else), unknown origin, our own origin, unsigned
    evil = Ed25519PrivateKey.generate()
    forged = VersionedAggregate("c1", evil, None, epoch_ms=300).publish(0.99, 100, now=0.0)
    stranger = VersionedAggregate("zz", evil, None, epoch_ms=300).publish(0.99, 100, now=0.0)
    mine = VersionedAggregate("c0", evil, None, epoch_ms=300).publish(0.99, 100, now=0.0)
    unsigned = VersionedAggregate("c2", None, None, epoch_ms=300).publish(0.99, 100, now=0.0)
    assert a.merge([forged, stranger, mine, unsigned], now=11.0) == 0 and a.refused == 4
    assert a.entries["c1"]["re"] == -0.5


@pytest.mark.parametrize("bad,what", [
    ({"origin": "x", "version": [1, 1], "re": 2.0, "im": 0.0, "devices": 1}, r"\|T_hat\| must be <= 1"),
    ({"origin": "x", "version": [1], "re": 0.0, "im": 0.0, "devices": 1}, "version"),
    ({"origin": "x", "version": [1, 1], "re": float("nan"), "im": 0.0, "devices": 1}, "finite"),
    ({"origin": "x", "version": [1, 1], "re": 0.0, "im": 0.0, "devices": -1}, "devices"),
    ({"origin": "", "version": [1, 1], "re": 0.0, "im": 0.0, "devices": 1}, "origin"),
    ({"origin": "x", "version": [1, 1], "re": 0.0, "devices": 1}, "must have"),
])
def test_bad_entries_are_named(bad, what):
    with pytest.raises(AggregateError, match=what):
        VersionedAggregate("me").merge([bad])


def test_four_cells_converge_over_mutual_tls(tmp_path):
    folder = str(tmp_path / "mesh")
    init_mesh(folder, CELLS)
    priv, pub = _keys()
    vals = {"c0": (0.5 + 0.1j, 3), "c1": (-0.2 + 0.4j, 1), "c2": (0.9j, 2), "c3": (0.3, 4)}

    async def go():
        aggs = {c: VersionedAggregate(c, priv[c], pub) for c in CELLS}
        nodes = {c: AntiEntropy(aggs[c], folder, c, rng=random.Random(i)) for i, c in enumerate(CELLS)}
        ports = {c: await nodes[c].start("127.0.0.1", 0) for c in CELLS}
        for c in CELLS:
            nodes[c].peers = [("127.0.0.1", ports[p], p) for p in CELLS if p != c]
            aggs[c].publish(*vals[c])
        rounds = 0
        try:
            while len({json.dumps(a.digest(), sort_keys=True) for a in aggs.values()}) > 1 \
                    or len(aggs["c0"].entries) < 4:
                rounds += 1
                assert rounds <= 10
                await asyncio.gather(*(n.exchange() for n in nodes.values()))
            # a replayed push (duplicate delivery) changes nothing
            before = aggs["c1"].t_global()
            await nodes["c0"].exchange(("127.0.0.1", ports["c1"], "c1"))
            assert aggs["c1"].t_global() == before
        finally:
            for n in nodes.values():
                await n.close()
        return aggs, nodes, rounds
    aggs, nodes, rounds = asyncio.run(asyncio.wait_for(go(), 30))
    want = sum(n * v for v, n in vals.values()) / 10
    for a in aggs.values():
        t, w = a.t_global()
        assert t == pytest.approx(want) and sum(w.values()) == pytest.approx(1.0)
    assert all(n.failures == 0 for n in nodes.values()) and rounds <= 4
    assert all(n.bytes_sent > 0 for n in nodes.values())
