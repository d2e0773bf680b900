"""SWIM over mutual TLS with cells as separate processes on loopback: a killed cell is suspected,
then declared dead by all others; restarted, it rejoins."""
import json
import os
import socket
import subprocess
import sys
import threading

from becomingone.mesh.tls import init_mesh
from tests.test_mesh_node_procs import wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = ["cell-0", "cell-1", "cell-2", "cell-3"]


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cell:
    def __init__(self, tls, name, port, seeds):
        self.name, self.views, self.history = name, None, []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "becomingone.mesh.swimnet", "--tls", tls, "--cell", name, "--port", str(port),
             "--interval", "0.2", "--timeout", "0.25"] + sum((["--seed", s] for s in seeds), []),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.views = json.loads(line)["view"]
                self.history.append(self.views)
            except (ValueError, KeyError):
                pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)




def test_kill_suspect_dead_rejoin_across_processes(tmp_path):
    tls = str(tmp_path / "tls")
    init_mesh(tls, CELLS)
    ports = {c: _free_port() for c in CELLS}
    seed = "127.0.0.1:%d" % ports["cell-0"]
    cells = {}
    try:
        for c in CELLS:
            cells[c] = Cell(tls, c, ports[c], [] if c == "cell-0" else [seed])

        def all_see(state, about, among):
            return all(cells[c].views and cells[c].views.get(about, [None])[0] == state for c in among)
        others = [c for c in CELLS if c != "cell-2"]
        assert wait(lambda: all(all_see("alive", x, CELLS) for x in CELLS), 20), \
            {c: cells[c].views for c in CELLS}
        cells["cell-2"].stop()
        assert wait(lambda: all_see("dead", "cell-2", others), 25), {c: cells[c].views for c in others}
        assert any(v.get("cell-2", [None])[0] == "suspect" for c in others for v in cells[c].history)
        cells["cell-2"] = Cell(tls, "cell-2", ports["cell-2"], [seed])
        assert wait(lambda: all_see("alive", "cell-2", CELLS[:2] + CELLS[3:])
                     and all_see("alive", "cell-0", ["cell-2"]), 25), {c: cells[c].views for c in CELLS}
        assert all(cells[c].views["cell-2"][1] >= 1 for c in others)   # rejoined with a new incarnation
    finally:
        for c in cells.values():
            c.stop()
