"""Live trust updates, against real `becomingone run` processes on 127.0.0.1 (no restart):

- embedded backend (mutual TLS, sync.mesh.pin_peers false): two cells alive to each other, one
  without the other's trust file refusing its T_global values (the fault: it stayed so,
  refused_values growing, until restarted). The trust file copied: within a few periods both
  agree on T_global and hold each other's ledger, verified. The trust file
  removed again: that cell's value leaves T_global. Its certificate revoked (`becomingone mesh
  revoke`, crl.pem copied beside ca.pem) and SIGHUP: the kept connections are cut, new ones
  refused, and the cells count each other dead.
- NATS backend: two cells on a real nats-server, each with only its own trust file, are alone
  in their trees; the trust files copied: one tree of two cells, T_global agreed."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from becomingone.mesh.tls import init_mesh
from tests.test_mesh_coordinator_procs import ROOT, Cell, free_port
from tests.test_mesh_node_procs import wait

pytestmark = pytest.mark.slow


def _config(base, name, extra):
    cfg = {"becomingone": {"name": name}, "data_dir": os.path.join(base, name),
           "security": {"intrinsic": False}, "ledger": {"pulse_summary_every": 0},
           "sync": {"mesh_enabled": True}}
    for k, v in extra.items():
        cfg["sync"][k] = v
    path = os.path.join(base, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def _run(base, name, extra):
    return Cell(base, name, _config(base, name, extra)).start()


def _copy_trust(base, frm, to):
    shutil.copy(os.path.join(base, frm, "trust", frm + ".json"), os.path.join(base, to, "trust", frm + ".json"))


def test_embedded_trust_files_and_revocation_take_effect_live(tmp_path):
    base = str(tmp_path)
    ca = os.path.join(base, "ca")
    init_mesh(ca, ["cell-a", "cell-b"])
    ports = {"cell-a": free_port(), "cell-b": free_port()}
    cells = {}
    for n in ("cell-a", "cell-b"):
        tls = os.path.join(base, n, "tls")
        os.makedirs(os.path.join(tls, "cells"))
        shutil.copy(os.path.join(ca, "ca.pem"), tls)
        for ext in (".pem", ".key"):
            shutil.copy(os.path.join(ca, "cells", n + ext), os.path.join(tls, "cells"))
    try:
        for n, other in (("cell-a", "cell-b"), ("cell-b", "cell-a")):
            cells[n] = _run(base, n, {"mesh": {
                "port": ports[n], "listen": "127.0.0.1", "interval": 0.2, "probe_timeout": 0.25,
                "checkpoint_interval": 0.5, "pin_peers": False, "tls_dir": os.path.join(base, n, "tls"),
                "trust_dir": os.path.join(base, n, "trust"),
                "peers": [{"host": "127.0.0.1", "port": ports[other]}]}})
        a, b = cells["cell-a"], cells["cell-b"]

        def alive(c, other):
            m = c.mesh()
            return bool(m) and m["members"].get(other, {}).get("state") == "alive"
        # alive to each other; cell-b is given cell-a's trust file (taken live) and exchanges
        # with it, and cell-a, without cell-b's, refuses every value cell-b sends
        assert wait(lambda: alive(a, "cell-b") and alive(b, "cell-a"), 30), [c.why() for c in cells.values()]
        _copy_trust(base, "cell-a", "cell-b")
        assert wait(lambda: a.mesh()["refused_values"] > 5, 20), a.mesh()
        assert set(a.mesh()["weights"]) == {"cell-a"}

        # cell-b's trust file copied to cell-a: taken within a few periods, no restart
        _copy_trust(base, "cell-b", "cell-a")

        def agreed():
            ma, mb = a.mesh(), b.mesh()
            return (ma and mb and set(ma["weights"]) == set(mb["weights"]) == {"cell-a", "cell-b"}
                    and ma["replicas"].get("cell-b", {}).get("verified")
                    and mb["replicas"].get("cell-a", {}).get("verified"))
        assert wait(agreed, 20), (a.mesh(), b.mesh())
        refused = a.mesh()["refused_values"]
        assert wait(lambda: a.mesh()["periods"] > 0, 2)
        assert a.mesh()["refused_values"] - refused <= 1
        assert a.proc.poll() is None and b.proc.poll() is None        # never restarted

        # cell-b's trust file removed at cell-a: its value leaves T_global there
        os.remove(os.path.join(base, "cell-a", "trust", "cell-b.json"))
        assert wait(lambda: set(a.mesh()["weights"]) == {"cell-a"}, 20), a.mesh()["weights"]

        # cell-b's certificate revoked: the CRL beside ca.pem at cell-a, then SIGHUP
        out = subprocess.run([sys.executable, "-m", "becomingone.cli", "mesh", "revoke", "--dir", ca,
                              "--cell", "cell-b"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        shutil.copy(os.path.join(ca, "crl.pem"), os.path.join(base, "cell-a", "tls"))
        a.proc.send_signal(signal.SIGHUP)                     # by PID: the process we started
        assert wait(lambda: a.mesh()["members"]["cell-b"]["state"] == "dead", 30), a.mesh()["members"]
        assert wait(lambda: b.mesh()["members"]["cell-a"]["state"] in ("suspect", "dead"), 30)
        assert a.proc.poll() is None
    finally:
        for c in cells.values():
            c.stop()


nats = pytest.importorskip("nats")
from becomingone.bench.nats_server import SERVER, nats_server  # noqa: E402


@pytest.mark.skipif(SERVER is None, reason="nats-server not installed")
def test_nats_trust_files_take_effect_live(tmp_path):
    base = str(tmp_path)
    cells = {}
    with nats_server(os.path.join(base, "js")) as url:
        try:
            for n in ("cell-a", "cell-b"):
                cells[n] = _run(base, n, {"backend": "nats", "nats": {"url": url, "member_ttl": 1.0},
                                          "mesh": {"interval": 0.2, "checkpoint_interval": 0.5,
                                                   "trust_dir": os.path.join(base, n, "trust")}})
            a, b = cells["cell-a"], cells["cell-b"]
            assert wait(lambda: a.mesh() and b.mesh() and a.mesh()["periods"] > 5 and b.mesh()["periods"] > 5, 30)
            assert a.mesh()["alive"] == 1 and b.mesh()["alive"] == 1    # strangers: alone in their trees
            _copy_trust(base, "cell-b", "cell-a")
            _copy_trust(base, "cell-a", "cell-b")

            def agreed():
                ma, mb = a.mesh(), b.mesh()
                return (ma["alive"] == mb["alive"] == 2 and ma["t_global"] == mb["t_global"]
                        and ma["members"]["cell-b"]["state"] == "alive")
            assert wait(agreed, 30), (a.mesh(), b.mesh())
            assert a.proc.poll() is None and b.proc.poll() is None
        finally:
            for c in cells.values():
                c.stop()
