"""One contract for every mesh backend (becomingone/mesh/backends/base.py MeshBackend): two
cells with ledgers of their own start, see each other alive, agree on T_global = the mean of
what they publish (equal device counts), keep a verified replica of each other's ledger up to
its signed checkpoint, and leave cleanly. Backends: embedded (mutual TLS on loopback) and NATS
JetStream (a real nats-server; skipped when the Debian package or nats-py is missing)."""
import asyncio
import importlib.util
import os

import pytest

from becomingone.bench.nats_server import SERVER as NATS_SERVER, nats_server
from becomingone.ledger import Ledger
from becomingone.mesh.backends.base import MeshBackend
from becomingone.mesh.backends.embedded import MeshNode
from becomingone.mesh.backends.nats import NatsMesh
from becomingone.mesh.tls import init_mesh
from becomingone.mesh.trust import load_trust, write_trust

CELLS = ("cell-a", "cell-b")
VALUES = {"cell-a": 0.8 + 0.2j, "cell-b": 0.4 - 0.2j}


def _ledgers(tmp_path):
    out = {}
    for i, c in enumerate(CELLS):
        os.makedirs(tmp_path / c, exist_ok=True)
        led = Ledger(str(tmp_path / c / "ledger.sqlite"))
        led.append_many([("action", {"action": "a", "cell": c, "i": k}) for k in range(20 + 7 * i)])
        led.checkpoint()
        out[c] = led
    return out


def _embedded(tmp_path, leds):
    tls = str(tmp_path / "tls")
    init_mesh(tls, list(CELLS))
    trust = str(tmp_path / "trust")
    for c, led in leds.items():
        write_trust(trust, c, led)
    nodes, port_a = {}, None
    for c in CELLS:
        seeds = [] if port_a is None else ["127.0.0.1:%d" % port_a]
        nodes[c] = MeshNode(tls, load_trust(trust), c, leds[c], str(tmp_path / c / "replicas"),
                            host="127.0.0.1", port=0, seeds=seeds, interval=0.1, timeout=0.3)
        if port_a is None:
            port_a = asyncio.get_event_loop().run_until_complete(nodes[c].start())
    return nodes


def _nats(tmp_path, leds, url):
    trust = str(tmp_path / "trust")
    for c, led in leds.items():               # both trust files first: each start loads them
        write_trust(trust, c, led)
    return {c: NatsMesh(url, c, leds[c], trust, str(tmp_path / c / "replicas"), interval=0.1,
                        member_ttl=2.0, publish_every=0.0) for c in CELLS}


@pytest.fixture(params=["embedded", "nats"])
def cells(request, tmp_path):
    leds = _ledgers(tmp_path)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if request.param == "embedded":
        nodes = _embedded(tmp_path, leds)
        started = [c for c in CELLS if nodes[c].swim.port == 0]
        yield loop, nodes, leds, started
    else:
        if NATS_SERVER is None or importlib.util.find_spec("nats") is None:
            pytest.skip("nats-server (Debian package) or nats-py not installed")
        with nats_server(tmp_path / "js") as url:
            yield loop, _nats(tmp_path, leds, url), leds, list(CELLS)
    for led in leds.values():
        led.close()
    loop.close()


def test_backends_agree_replicate_and_leave(cells):
    loop, nodes, leds, to_start = cells

    async def run():
        for c in to_start:
            await nodes[c].start()
        for n in nodes.values():
            assert isinstance(n, MeshBackend) and n.cell in n.members()
        for _ in range(200):
            for c in CELLS:
                await nodes[c].period(VALUES[c], 3)
            if all(_settled(nodes[c], leds) for c in CELLS):
                break
            await asyncio.sleep(0.05)
        try:
            for c in CELLS:
                n = nodes[c]
                assert n.alive_count() == 2 and {m for m, st in n.members().items()
                                                 if st["state"] == "alive"} == set(CELLS)
                t, w = n.agg.t_global()
                assert abs(t - sum(VALUES.values()) / 2) < 1e-9 and sorted(w.values()) == [0.5, 0.5]
                other = next(x for x in CELLS if x != c)
                origin = leds[other].origin
                assert n.origin_cell(origin) == other and n.replicates(origin)
                assert n.store.size(origin) == leds[other].size and not n.store.untrusted
                assert n.alerts == [] and isinstance(n.status_fields(), dict)
        finally:
            for n in nodes.values():
                await n.close()
    loop.run_until_complete(run())


def _settled(n, leds):
    other = next(x for x in CELLS if x != n.cell)
    t, w = n.agg.t_global()
    return n.alive_count() == 2 and len(w) == 2 and n.store.size(leds[other].origin) == leds[other].size
