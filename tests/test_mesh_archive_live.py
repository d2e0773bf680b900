"""Archives in the live mesh (host/mesh/archiving.py): cells seal their ledger every
`segment_entries` into k-of-n shards placed by the ring on the other live cells, which keep them;
a lost cell's ledger is rebuilt from k live holders with n - k holders killed as well.

- NATS: six cells on a real nats-server (k 3, n 5); cell-0 writes 2 segments' worth, both are
  sealed and placed on its five peers; cell-0 and two holders are killed; `becomingone mesh
  fetch-shards` (a separate process) collects the shards from the three live holders and
  `becomingone mesh restore` rebuilds cell-0's ledger, root equal, signature checked with the
  pinned key.
- embedded (mutual TLS): the same with four MeshNode cells (k 2, n 3) and fetch-shards --tls.
- a cell refuses a shard of another cell's ledger (a cell places only its own)."""
import asyncio
import json
import os
import subprocess
import sys

import pytest

from becomingone.ledger import Ledger
from becomingone.mesh.archive import ArchiveError
from becomingone.mesh.archiving import Archiver, placement
from becomingone.mesh.trust import load_trust, write_trust
from tests.test_mesh_coordinator_procs import ROOT


def _cli(*argv):
    out = subprocess.run([sys.executable, "-m", "becomingone.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _restore_and_check(base, fetched, k, led, size):
    db = os.path.join(base, "restored.sqlite")
    pub = os.path.join(os.path.dirname(led.path), "ledger-signing.pub")
    res = json.loads(_cli("mesh", "restore", "--from", fetched, "--k", str(k), "--to", db, "--pubkey", pub, "--json"))
    assert res["size"] == size and res["key_pinned"]
    with Ledger(db) as r:
        assert r.root() == led.root(size)
    return res


async def _periods(meshes, until, limit, dt):
    for _ in range(limit):
        await asyncio.gather(*(m.period(0.1j, 1) for m in meshes.values()))
        if until():
            return True
        await asyncio.sleep(dt)
    return False


nats = pytest.importorskip("nats")
from becomingone.bench.nats_server import SERVER, nats_server  # noqa: E402


@pytest.mark.skipif(SERVER is None, reason="nats-server not installed")
def test_nats_cells_seal_place_and_restore_from_k_live_holders(tmp_path):
    from becomingone.mesh.backends.nats import NatsMesh
    base = str(tmp_path)
    names = ["cell-%d" % i for i in range(6)]
    trust = os.path.join(base, "trust")
    leds = {}
    for c in names:
        os.makedirs(os.path.join(base, c))
        leds[c] = Ledger(os.path.join(base, c, "ledger.sqlite"))
        write_trust(trust, c, leds[c])
    origin = leds["cell-0"].origin
    for n in (199, 200, 50):                  # checkpoints at 200 and 400 (the genesis is entry 0)
        leds["cell-0"].append_many([("action", {"action": "a", "i": i}) for i in range(n)])
        leds["cell-0"].checkpoint()
    with nats_server(os.path.join(base, "js")) as url:
        async def go():
            ms = {c: NatsMesh(url, c, leds[c], trust, os.path.join(base, c, "replicas"), interval=0.2,
                              member_ttl=1.5, publish_every=0.5, write_own_trust=False,
                              archive=(3, 5, 200), shards_dir=os.path.join(base, c, "shards"))
                  for c in names}
            for m in ms.values():
                await m.start()
            a = ms["cell-0"].archiver
            ok = await _periods(ms, lambda: a.status()["segments"] == 2, 150, 0.2)
            assert ok, a.status()
            segs = a.state["segments"]
            assert [(s["start"], s["stop"]) for s in segs] == [(0, 200), (200, 400)]
            for s in segs:                                   # the ring's placement, owner excluded
                assert s["cells"] == placement(names, "cell-0", "segment:%s:%d-%d" % (origin, s["start"], s["stop"]), 5)
                assert sorted(s["cells"]) == names[1:]
            held = {c: len(ms[c].archiver.held(origin)) for c in names[1:]}
            assert held == {c: 2 for c in names[1:]}
            # cell-0 and two holders die
            for c in ("cell-0", "cell-1", "cell-2"):
                await ms.pop(c).close()
            # the live ones keep running while the shards are fetched
            task = asyncio.ensure_future(_periods(ms, lambda: False, 10 ** 6, 0.2))
            fetched = os.path.join(base, "fetched")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "becomingone.cli", "mesh", "fetch-shards", "--origin", "cell-0", "--out",
                fetched, "--nats", url, "--trust", trust, "--json", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            task.cancel()
            for m in ms.values():
                await m.close()
            return json.loads(out)
        rep = asyncio.run(asyncio.wait_for(go(), 120))
    assert rep["shards"] == 6 and sorted(rep["cells"]) == ["cell-3", "cell-4", "cell-5"]
    assert set(rep["unreachable"]) == {"cell-1", "cell-2"}
    _restore_and_check(base, os.path.join(base, "fetched"), 3, leds["cell-0"], 400)
    for led in leds.values():
        led.close()


def test_embedded_cells_seal_place_and_restore(tmp_path):
    from becomingone.mesh.backends.embedded import MeshNode
    from becomingone.mesh.tls import init_mesh
    base = str(tmp_path)
    names = ["cell-a", "cell-b", "cell-c", "cell-d"]
    tls = os.path.join(base, "tls")
    init_mesh(tls, names + ["operator"])
    trust = os.path.join(base, "trust")
    leds = {}
    for c in names:
        os.makedirs(os.path.join(base, c))
        leds[c] = Ledger(os.path.join(base, c, "ledger.sqlite"))
        write_trust(trust, c, leds[c])
    for n in (59, 60, 10):                    # checkpoints at 60, 120 and 130
        leds["cell-a"].append_many([("action", {"action": "a", "i": i}) for i in range(n)])
        leds["cell-a"].checkpoint()

    async def go():
        nodes, ports = {}, {}
        for c in names:
            seeds = ["127.0.0.1:%d" % ports["cell-a"]] if ports else []
            nodes[c] = MeshNode(tls, load_trust(trust), c, leds[c], os.path.join(base, c, "replicas"),
                                seeds=seeds, interval=0.1, timeout=0.3, archive=(2, 3, 60),
                                shards_dir=os.path.join(base, c, "shards"))
            ports[c] = await nodes[c].start()
        a = nodes["cell-a"].archiver
        ok = await _periods(nodes, lambda: a.status()["segments"] == 2, 300, 0.05)
        assert ok, a.status()
        holders = set(a.state["segments"][0]["cells"]) | set(a.state["segments"][1]["cells"])
        assert "cell-a" not in holders
        # cell-a and one holder of each segment's three... with four cells every other cell holds
        # one shard of each: kill cell-a and cell-b, fetch from cell-c and cell-d (k = 2)
        for c in ("cell-a", "cell-b"):
            await nodes.pop(c).close()
        task = asyncio.ensure_future(_periods(nodes, lambda: False, 10 ** 6, 0.1))
        fetched = os.path.join(base, "fetched")
        argv = ["mesh", "fetch-shards", "--origin", "cell-a", "--out", fetched, "--trust", trust, "--tls", tls,
                "--cell", "operator", "--json"]
        for c in ("cell-a", "cell-b", "cell-c", "cell-d"):
            argv += ["--peer", "127.0.0.1:%d" % ports[c]]
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "becomingone.cli", *argv, cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        task.cancel()
        for n in nodes.values():
            await n.close()
        return json.loads(out)
    rep = asyncio.run(asyncio.wait_for(go(), 120))
    assert rep["shards"] == 4 and sorted(rep["cells"]) == ["cell-c", "cell-d"] and len(rep["unreachable"]) == 2
    _restore_and_check(base, os.path.join(base, "fetched"), 2, leds["cell-a"], 120)
    for led in leds.values():
        led.close()


def test_a_cell_keeps_only_shards_of_the_senders_ledger(tmp_path):
    from becomingone.mesh.archive import encode_shards, seal_segment
    led = Ledger(str(tmp_path / "a.sqlite"))
    led.append_many([("action", {"action": "a", "i": i}) for i in range(20)])
    seg, h = seal_segment(led, 0, 20)
    blobs = encode_shards(seg, h, 2, 3)
    arc = Archiver(led, str(tmp_path / "shards"), k=2, n=3, segment=1000)
    assert os.path.exists(arc.receive(blobs[0], led.origin))
    with pytest.raises(ArchiveError, match="only place shards of its own ledger"):
        arc.receive(blobs[1], "someone-else")
    with pytest.raises(ArchiveError):
        arc.receive(blobs[2][:-3] + b"xyz", led.origin)              # bytes do not match their SHA3
    assert len(arc.held(led.origin)) == 1 and arc.counts["refused"] == 2
    led.close()
