"""Three cells as separate processes (host/mesh/backends/embedded.py: SWIM + T_global anti-entropy + ledger
replication on one mutual-TLS listener): they converge on membership, on T_global (the
device-weighted sum) and on each other's ledgers; a killed cell is declared dead and drops out of
T_global after its TTL."""
import json
import os
import subprocess
import sys
import threading
import time


from becomingone.ledger import Ledger
from becomingone.mesh.trust import write_trust
from becomingone.mesh.tls import init_mesh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = {"cell-0": ("0.5,0.1", 3), "cell-1": ("-0.2,0.4", 1), "cell-2": ("0.0,0.9", 4)}


def setup_cells(base, cells):
    tls, trust = os.path.join(base, "tls"), os.path.join(base, "trust")
    init_mesh(tls, list(cells))
    for c in cells:
        os.makedirs(os.path.join(base, c))
        with Ledger(os.path.join(base, c, "ledger.sqlite")) as led:
            led.append_many([("action", {"action": "boot", "cell": c, "i": i}) for i in range(100)])
            led.checkpoint()
            write_trust(trust, c, led)
    return tls, trust


class Proc:
    def __init__(self, base, tls, trust, cell, port, seeds, t_hat, devices, prefix=()):
        self.status, self.history = None, []
        cmd = list(prefix) + [sys.executable, "-m", "tests.mesh_node_process", "--tls", tls, "--trust", trust,
                              "--cell", cell, "--ledger", os.path.join(base, cell, "ledger.sqlite"),
                              "--replicas", os.path.join(base, cell, "replicas"), "--host", seeds[1],
                              "--port", str(port), "--interval", "0.2", "--timeout", "0.25",
                              "--t-hat=" + t_hat, "--devices", str(devices), "--append-every", "5"]
        cmd += sum((["--seed", s] for s in seeds[0]), [])
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.status = json.loads(line)
                self.history.append(self.status)
            except ValueError:
                pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def wait(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except (TypeError, KeyError):
            pass
        time.sleep(0.1)
    return False


def expected_t(cells):
    tot = sum(n for _t, n in cells.values())
    re_ = sum(float(t.split(",")[0]) * n for t, n in cells.values()) / tot
    im_ = sum(float(t.split(",")[1]) * n for t, n in cells.values()) / tot
    return re_, im_


def converged(procs, names, want):
    for c in names:
        s = procs[c].status
        if not s or any(s["view"].get(o, [None])[0] != "alive" for o in names):
            return False
        if abs(s["t_global"][0] - want[0]) > 1e-9 or abs(s["t_global"][1] - want[1]) > 1e-9:
            return False
        for o in names:          # each holds the others' ledgers up to a recent checkpoint
            if o != c and s["replicas"][o] < 101:
                return False
    return True


def start_cells(base, tls, trust, cells, procs):
    """Start one process per cell on free loopback ports, cell-0 being every other cell's seed;
    fills `procs` as it goes so the caller's cleanup sees every started process."""
    import socket
    ports = {}
    for c in cells:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports[c] = s.getsockname()[1]
        s.close()
    seed = "127.0.0.1:%d" % ports["cell-0"]
    for c, (t, n) in cells.items():
        procs[c] = Proc(base, tls, trust, c, ports[c], ([] if c == "cell-0" else [seed], "127.0.0.1"), t, n)
    return procs


def test_three_cell_processes_converge_and_drop_a_dead_cell(tmp_path):
    base = str(tmp_path)
    tls, trust = setup_cells(base, CELLS)
    procs = {}
    try:
        start_cells(base, tls, trust, CELLS, procs)
        want = expected_t(CELLS)
        assert wait(lambda: converged(procs, list(CELLS), want), 30), \
            {c: (p.status, p.proc.poll(), p.proc.poll() is not None and p.proc.stderr.read()[-2000:])
             for c, p in procs.items()}
        procs["cell-2"].stop()
        rest = {c: v for c, v in CELLS.items() if c != "cell-2"}
        want2 = expected_t(rest)

        def dropped():
            return all(procs[c].status["view"]["cell-2"][0] == "dead"
                       and abs(procs[c].status["t_global"][0] - want2[0]) < 1e-9 for c in rest)
        assert wait(dropped, 30), {c: procs[c].status for c in rest}
        assert all(p.status["alerts"] == 0 for c, p in procs.items() if c != "cell-2")
    finally:
        for p in procs.values():
            p.stop()
