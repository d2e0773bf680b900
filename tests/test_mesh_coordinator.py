"""The mesh inside the coordinator (host/mesh/bridge.py, host/mesh/service.py): missing TLS
material is a clear error naming `becomingone mesh init`; a forked peer (a separate node process
serving a second signed history) raises a split-view alert that shows in status and becomes a
meta witness entry in this cell's ledger; `sync.backend: nats` runs the same status fields over
a real nats-server (replication, T_global, membership)."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from becomingone.config import load_config
from becomingone.cell import Cell
from becomingone.errors import UserError
from becomingone.ledger import Ledger
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.trust import write_trust
from becomingone.mesh.replica import ReplicaStore
from becomingone.mesh.tls import init_mesh
from shared import protocol as P
from tests.test_coordinator import HELLO, FakeDevice, tel
from tests.test_mesh_coordinator_procs import free_port
from tests.test_mesh_node_procs import wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def coordinator(data, name, **over):
    o = {"data_dir": data, "becomingone.name": name, "security.intrinsic": False,
         "ledger.pulse_summary_every": 0, "sync.mesh_enabled": True, "sync.mesh.listen": "127.0.0.1",
         "sync.mesh.interval": 0.2, "sync.mesh.checkpoint_interval": 0.3}
    o.update(over)
    c = Cell(load_config(overrides=o), links=["udp://127.0.0.1:0"]).start().coordinator
    th = threading.Thread(target=c.run, daemon=True)
    th.start()
    return c, th


def stop(c, th):
    c.stop()
    th.join(15)
    assert not th.is_alive()


def test_missing_tls_names_the_mesh_init_command(tmp_path):
    data = str(tmp_path / "d")
    cfg = load_config(overrides={"data_dir": data, "becomingone.name": "lab-a", "sync.mesh_enabled": True})
    with pytest.raises(UserError) as e:
        Cell(cfg, links=["udp://127.0.0.1:0"]).start()
    want = "becomingone mesh init --dir %s --cells lab-a" % os.path.join(data, "mesh", "tls")
    assert want in str(e.value)
    # the CLI: `becomingone: ...`, exit 2, no traceback
    out = subprocess.run([sys.executable, "-m", "becomingone.cli", "run", "--data", data, "--link", "udp://127.0.0.1:0",
                          "--set", "sync.mesh_enabled=true", "--set", "becomingone.name=lab-a",
                          "--duration", "5"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("becomingone: ") and want in out.stderr
    assert "Traceback" not in out.stderr


def test_forked_peer_alert_in_status_and_ledger(tmp_path):
    base = str(tmp_path)
    tls, trust = os.path.join(base, "tls"), os.path.join(base, "trust")
    init_mesh(tls, ["cell-0", "cell-2"])
    data0 = os.path.join(base, "cell-0")
    os.makedirs(data0)
    with Ledger(os.path.join(data0, "ledger.sqlite")) as led:      # the coordinator's own ledger
        write_trust(trust, "cell-0", led)
    c2, fork = os.path.join(base, "cell-2"), os.path.join(base, "cell-2-fork")
    os.makedirs(c2)
    with Ledger(os.path.join(c2, "ledger.sqlite")) as a:
        a.append_many([("action", {"action": "boot", "i": i}) for i in range(50)])
        a.checkpoint()
        write_trust(trust, "cell-2", a)
    shutil.copytree(c2, fork)
    with Ledger(os.path.join(c2, "ledger.sqlite")) as a:           # history A: what cell-0 holds
        a.append_many([("action", {"action": "pay", "to": "alice"})] * 10)
        note_a = a.checkpoint()
        lines_a = [e.to_json() for e in a.entries(0, a.size)]
        origin, pub = a.origin, ckpt.load_public_key(a.public_key_pem().encode())
    with Ledger(os.path.join(fork, "ledger.sqlite")) as b:         # history B: what cell-2 serves
        b.append_many([("action", {"action": "pay", "to": "mallory"})] * 10)
        b.checkpoint()
        b.append_many([("action", {"action": "more"})] * 5)
        b.checkpoint()
    seeded = ReplicaStore(os.path.join(data0, "mesh", "replicas"), {origin: pub})
    assert seeded.apply(origin, lines_a, note_a) == 61
    seeded.close()
    p0, p2 = free_port(), free_port()
    c, th = coordinator(data0, "cell-0", **{"sync.mesh.port": p0, "sync.mesh.tls_dir": tls,
                                            "sync.mesh.trust_dir": trust, "sync.mesh.pin_peers": False})
    node = subprocess.Popen([sys.executable, "-m", "tests.mesh_node_process", "--tls", tls, "--trust", trust, "--cell", "cell-2",
                             "--ledger", os.path.join(fork, "ledger.sqlite"), "--replicas",
                             os.path.join(fork, "replicas"), "--port", str(p2), "--seed", "127.0.0.1:%d" % p0,
                             "--interval", "0.2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait(lambda: c.status()["mesh"]["alert_count"] >= 1, 30), (c.status()["mesh"], node.poll())
        st = c.status()["mesh"]
        assert st["split_views"] == [origin]
        al = st["alerts"][0]
        assert al["status"] == "split-view" and al["cell"] == "cell-2" and al["origin"] == origin
        assert st["replicas"]["cell-2"]["untrusted"] and st["replicas"]["cell-2"]["size"] == 61
        assert st["replicas"]["cell-2"]["alerts"] >= 1
        c.ledger.flush(10)
        assert wait(lambda: any(e.data.get("witness") == "mesh_alert" for e in c.ledger.entries()), 5)
        wit = [e.data for e in c.ledger.entries() if e.data.get("witness") == "mesh_alert"]
        assert wit[0]["kind"] == "witness" and wit[0]["layer"] == "meta" and wit[0]["status"] == "split-view"
        assert wit[0]["origin"] == origin and os.path.exists(wit[0]["evidence"])
    finally:
        node.kill()                               # by PID: the process we started
        node.wait(10)
        stop(c, th)


nats_mod = pytest.importorskip("nats")
from tests.test_mesh_nats import SERVER, nats_url  # noqa: E402,F401  (the real nats-server fixture)


@pytest.mark.skipif(SERVER is None, reason="nats-server (Debian package) not installed")
def test_nats_backend_coordinators(nats_url, tmp_path):  # noqa: F811
    base = str(tmp_path)
    trust = os.path.join(base, "trust")
    names = ["cell-a", "cell-b"]
    for n in names:          # NATS cells trust only the trust folder (no mutual TLS to pin over)
        os.makedirs(os.path.join(base, n))
        with Ledger(os.path.join(base, n, "ledger.sqlite")) as led:
            write_trust(trust, n, led)
    over = {"sync.backend": "nats", "sync.nats.url": nats_url, "sync.nats.member_ttl": 1.0,
            "sync.mesh.trust_dir": trust}
    cs = {n: coordinator(os.path.join(base, n), n, **over) for n in names}
    try:
        host, port = cs["cell-a"][0].links[0].local_url[6:].rsplit(":", 1)
        dev = FakeDevice((host, int(port)))
        dev.send(P.HELLO, HELLO)
        # 32 KAIROS samples a beat at f_k = 1 kHz: the stream holds > 9 s, so the sync layer's
        # 10 s window exists (fill >= 90 %) and the cell has a T_sync to publish
        for b in range(1, 300):
            dev.send(P.TELEMETRY, dict(tel(b), n_samples=32))

        def agree():
            st = {n: c.status()["mesh"] for n, (c, _th) in cs.items()}
            for n, s in st.items():
                other = [o for o in names if o != n][0]
                if any(s["members"].get(o, {}).get("state") != "alive" for o in names):
                    return False
                row = s["replicas"][other]
                if not row["verified"] or row["size"] < st[other]["ledger"]["signed"] or row["size"] < 2:
                    return False
            a, b = st["cell-a"]["t_global"], st["cell-b"]["t_global"]
            return abs(a[0]) > 0 and a == b and st["cell-b"]["weights"] == {"cell-a": 1.0, "cell-b": 0.0}
        assert wait(agree, 30), {n: c.status()["mesh"] for n, (c, _th) in cs.items()}
        st = cs["cell-a"][0].status()["mesh"]
        assert st["backend"] == "nats" and st["url"] == nats_url and st["alive"] == 2
        # T_global in mesh_sync at both; each cell's value and weight at its group's leader (the
        # only cell holding its members' values; docs/MESH.md "Scale")
        lead = next(n for n in names if cs[n][0].status()["mesh"]["leads"] >= 1)

        def rows(n):
            c = cs[n][0]
            c.call(c.core.memory.flush)
            return c.core.memory.query("mesh_sync", limit=100000)
        assert wait(lambda: any(r["peer"] == "cell-a" and r["weight"] == 1.0 for r in rows(lead)), 10)
        assert all(any(r["peer"] == "T_global" for r in rows(n)) for n in names)
        tg = [r for r in rows("cell-a") if r["peer"] == "T_global"]
        assert abs(tg[-1]["T_hat"][0] - st["t_global"][0]) < 1e-9
        stop(*cs.pop("cell-b"))
        assert wait(lambda: cs["cell-a"][0].status()["mesh"]["members"]["cell-b"]["state"] == "dead", 15)
        assert cs["cell-a"][0].status()["mesh"]["alert_count"] == 0
    finally:
        for c, th in cs.values():
            stop(c, th)
