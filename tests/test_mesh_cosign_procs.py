"""Mesh witness cosigning between real `becomingone run` processes on 127.0.0.1 (issue 13:
"checkpoints leave the host and come back cosigned").

Two cells with the embedded mesh backend over mutual TLS (certificates from `becomingone mesh
init`), each holding the other's trust file: each cell witnesses the other's ledger
(host/mesh/cosign.py). Checked: cosignatures by the peer appear at /api/ledger/cosignatures of
each cell's HTTP API; `ledger verify` counts them; the checkpoint the peer holds as witness
(`becomingone witness show` on its witness folder) is what `ledger verify --against` takes, and
it passes on the real ledger; then the ledger is rolled back with its checkpoints and
cosignatures deleted and re-signed with its own key (issue 13 item 6): `ledger verify` alone
says OK, `ledger verify --against` the peer's checkpoint catches it."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.request

import yaml

from tests.test_mesh_coordinator_procs import ROOT, free_port
from tests.test_mesh_node_procs import wait


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "becomingone.cli"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


class _Cell:
    """`becomingone run --config` with the HTTP API on a free port (ready file: its URL)."""

    def __init__(self, base, name, config):
        self.name, self.config = name, config
        self.data = os.path.join(base, name)
        self.ready = os.path.join(base, name + ".ready")
        env = dict(os.environ, BECOMINGONE_HTTP="127.0.0.1:0")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "becomingone.cli", "run", "--config", config, "--link",
             "udp://127.0.0.1:0", "--ready-file", self.ready, "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def url(self):
        with open(self.ready) as f:
            return json.load(f)["http"].rstrip("/")

    def get(self, path):
        with urllib.request.urlopen(self.url() + path, timeout=10) as r:
            return json.loads(r.read())

    def why(self):
        if self.proc.poll() is not None:
            return "%s exited %s: %s" % (self.name, self.proc.returncode,
                                         self.proc.stderr.read()[-1500:])
        return "%s running" % self.name

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)         # by PID: the process we started
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_mesh_cells_cosign_each_other_over_mutual_tls(tmp_path):
    base = str(tmp_path)
    ca = os.path.join(base, "ca")
    r = _cli("mesh", "init", "--dir", ca, "--cells", "cell-a,cell-b")
    assert r.returncode == 0, r.stderr
    ports = {"cell-a": free_port(), "cell-b": free_port()}
    configs, cells = {}, {}
    for n, other in (("cell-a", "cell-b"), ("cell-b", "cell-a")):
        tls = os.path.join(base, n, "tls")
        os.makedirs(os.path.join(tls, "cells"))
        shutil.copy(os.path.join(ca, "ca.pem"), tls)
        for ext in (".pem", ".key"):
            shutil.copy(os.path.join(ca, "cells", n + ext), os.path.join(tls, "cells"))
        cfg = {"becomingone": {"name": n}, "data_dir": os.path.join(base, n),
               "security": {"intrinsic": False},
               "ledger": {"pulse_summary_every": 0},
               "sync": {"mesh_enabled": True, "mesh": {
                   "port": ports[n], "listen": "127.0.0.1", "interval": 0.2,
                   "probe_timeout": 0.25, "checkpoint_interval": 0.5, "pin_peers": False,
                   "tls_dir": tls, "trust_dir": os.path.join(base, n, "trust"),
                   "peers": [{"host": "127.0.0.1", "port": ports[other]}]}}}
        configs[n] = os.path.join(base, n + ".yaml")
        with open(configs[n], "w") as f:
            yaml.safe_dump(cfg, f)
    from becomingone.ledger import Ledger
    path = os.path.join(base, "cell-a", "ledger.sqlite")
    led = Ledger(path)                                    # cell-a's history: 30 entries
    for i in range(30):
        led.append("action", {"action": "x", "i": i})
    origin = led.origin
    led.close()
    try:
        for n in ("cell-a", "cell-b"):
            cells[n] = _Cell(base, n, configs[n])
        a, b = cells["cell-a"], cells["cell-b"]
        assert wait(lambda: all(os.path.exists(c.ready) for c in (a, b)) or
                    any(c.proc.poll() is not None for c in (a, b)), 30)
        assert all(os.path.exists(c.ready) for c in (a, b)), [c.why() for c in (a, b)]
        # each cell's trust file to the other (as an operator copies them; taken live)
        for frm, to in (("cell-a", "cell-b"), ("cell-b", "cell-a")):
            shutil.copy(os.path.join(base, frm, "trust", frm + ".json"),
                        os.path.join(base, to, "trust", frm + ".json"))

        def cosigned_by(c, peer):
            try:
                rows = c.get("/api/ledger/cosignatures")
            except OSError:
                return []
            rows = rows.get("cosignatures", rows) if isinstance(rows, dict) else rows
            return [x for x in rows if peer in json.dumps(x)]
        assert wait(lambda: cosigned_by(a, "cell-b") and cosigned_by(b, "cell-a"), 40), (
            "no cosignatures between the cells: a %r, b %r; %s" % (
                a.get("/api/ledger/cosignatures"), b.get("/api/ledger/cosignatures"),
                [c.why() for c in (a, b)]))
    finally:
        for c in cells.values():
            c.stop()
    # the cells stopped: cell-a's ledger as the operator (and an attacker) finds it
    v = _cli("ledger", "verify", "--config", configs["cell-a"], "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    res = json.loads(v.stdout)
    assert res["cosignatures"] >= 1, res
    size = res["size"]
    # the checkpoint cell-b holds for cell-a's ledger, as its witness
    wdir = [os.path.join(dp) for dp, dn, fn in os.walk(os.path.join(base, "cell-b"))
            if os.path.basename(dp) == "witness"]
    assert wdir, "cell-b keeps no witness folder"
    show = json.loads(_cli("witness", "show", "--data", wdir[0], "--json").stdout)
    assert origin in show["logs"], ("cell-b does not witness cell-a's ledger", origin, show)
    note = _cli("witness", "show", "--data", wdir[0], "--origin", origin).stdout
    saved = tmp_path / "cell-a-checkpoint-at-cell-b.txt"
    saved.write_text(note)
    r = _cli("ledger", "verify", "--config", configs["cell-a"], "--against", str(saved))
    assert r.returncode == 0, r.stdout + r.stderr
    # the rollback: tail, checkpoints and cosignatures deleted, re-signed with its own key
    cosigned = int(note.splitlines()[1])
    assert cosigned > 30, note
    keep = 18
    con = sqlite3.connect(path)
    con.execute("DELETE FROM entries WHERE idx >= ?", (keep,))
    con.execute("DELETE FROM nodes WHERE pos > ?", (keep,))
    con.execute("DELETE FROM checkpoints")
    con.execute("DELETE FROM cosignatures")
    con.commit()
    con.close()
    led = Ledger(path)
    assert led.size == keep < size
    led.checkpoint()
    led.close()
    alone = _cli("ledger", "verify", "--config", configs["cell-a"])
    assert alone.returncode == 0, "the rewritten ledger should verify alone: " + alone.stdout
    r = _cli("ledger", "verify", "--config", configs["cell-a"], "--against", str(saved))
    assert r.returncode != 0 and "rolled back" in r.stdout + r.stderr, (
        "cell-a's ledger rolled back from %d to %d entries passed verify --against cell-b's "
        "cosigned checkpoint: %s" % (cosigned, keep, r.stdout + r.stderr))
