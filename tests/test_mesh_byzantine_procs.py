"""A Byzantine cell as a separate process: cell-2 signs two histories (its ledger and key were
copied and grown two ways). cell-0 holds a verified replica of history A; cell-2's process serves
history B. cell-0 catches the split view (two signed roots for one size), keeps both checkpoints
as evidence and stops trusting cell-2's origin; cell-1, which only ever saw B, replicates it
until it is told (not part of this test: evidence gossip)."""
import json
import os
import shutil

from becomingone.ledger import Ledger
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.replica import ReplicaStore
from tests.test_mesh_node_procs import CELLS, setup_cells, start_cells, wait


def test_forked_cell_is_caught_by_a_peer_process(tmp_path):
    base = str(tmp_path)
    tls, trust = setup_cells(base, CELLS)
    c2 = os.path.join(base, "cell-2")
    shutil.copytree(c2, os.path.join(base, "cell-2-fork"))
    with Ledger(os.path.join(c2, "ledger.sqlite")) as a:
        a.append_many([("action", {"action": "pay", "to": "alice"})] * 10)
        note_a = a.checkpoint()
        lines_a = [e.to_json() for e in a.entries(0, a.size)]
        origin, pub = a.origin, ckpt.load_public_key(a.public_key_pem().encode())
    with Ledger(os.path.join(base, "cell-2-fork", "ledger.sqlite")) as b:
        b.append_many([("action", {"action": "pay", "to": "mallory"})] * 10)
        b.checkpoint()
        b.append_many([("action", {"action": "more"})] * 5)    # its head is AHEAD of our replica:
        b.checkpoint()                                         # caught by the size-111 cross-check
    seeded = ReplicaStore(os.path.join(base, "cell-0", "replicas"), {origin: pub})
    assert seeded.apply(origin, lines_a, note_a) == 111
    seeded.close()
    # cell-2's process runs on the fork (history B)
    shutil.rmtree(c2)
    shutil.copytree(os.path.join(base, "cell-2-fork"), c2)
    procs = {}
    try:
        start_cells(base, tls, trust, CELLS, procs)
        assert wait(lambda: procs["cell-0"].status["alerts"] >= 1, 30), procs["cell-0"].status
        ev_dir = os.path.join(base, "cell-0", "replicas", "evidence")
        # the alert count and the evidence file are written by different steps of one pull:
        # under load the status line can report the alert first
        assert wait(lambda: os.path.isdir(ev_dir) and any(f.endswith(".json") for f in os.listdir(ev_dir)),
                    30), (procs["cell-0"].status, os.listdir(os.path.dirname(ev_dir)))
        evs = [json.load(open(os.path.join(ev_dir, f))) for f in os.listdir(ev_dir) if f.endswith(".json")]
        assert evs and evs[0]["origin"] == origin
        roots = {ckpt.verify_note(n, pub)["root"] for n in evs[0]["checkpoints"]}
        assert len(roots) == 2                                     # two signed roots, one size
        untrusted = json.load(open(os.path.join(base, "cell-0", "replicas", "untrusted.json")))
        assert untrusted == [origin]
        # cell-0 never took history B
        assert procs["cell-0"].status["replicas"]["cell-2"] == 111
    finally:
        for p in procs.values():
            p.stop()
    st = ReplicaStore(os.path.join(base, "cell-0", "replicas"), {origin: pub})
    rows = st.entries(origin, 101, 111)
    assert all('"to":"alice"' in r for r in rows)
