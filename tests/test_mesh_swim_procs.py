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


class Cell:
    """One swimnet process. port 0 binds a free port (the one it took is read from its
    "listening" line): a port picked here and bound later can be taken in between by another
    process's outgoing connection."""
    def __init__(self, tls, name, port, seeds, log):
        self.name, self.views, self.history, self.port = name, None, [], None
        self.listening = threading.Event()
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "becomingone.mesh.swimnet", "--tls", tls, "--cell", name, "--port", str(port),
                 "--interval", "0.2", "--timeout", "0.25"] + sum((["--seed", s] for s in seeds), []),
                cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "listening" in msg:
                self.port = msg["listening"]
                self.listening.set()
            elif "view" in msg:
                self.views = msg["view"]
                self.history.append(self.views)
        self.listening.set()          # ended (the exit code and stderr say why)

    def up(self, timeout=20):
        """-> the port it listens on, or None when it ended first."""
        self.listening.wait(timeout)
        return self.port

    def state(self):
        with open(self.log, "rb") as f:
            err = f.read()[-400:].decode("utf-8", "replace")
        return {"exit": self.proc.poll(), "port": self.port, "views": self.views, "stderr": err}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def test_kill_suspect_dead_rejoin_across_processes(tmp_path):
    tls = str(tmp_path / "tls")
    init_mesh(tls, CELLS)
    cells = {}

    def start(c, port, seeds):
        cells[c] = Cell(tls, c, port, seeds, str(tmp_path / ("%s.err" % c)))
        return cells[c].up()
    try:
        seed = "127.0.0.1:%d" % start("cell-0", 0, [])
        for c in CELLS[1:]:
            assert start(c, 0, [seed]), cells[c].state()

        def all_see(state, about, among):
            return all(cells[c].views and cells[c].views.get(about, [None])[0] == state for c in among)
        others = [c for c in CELLS if c != "cell-2"]
        assert wait(lambda: all(all_see("alive", x, CELLS) for x in CELLS), 20), \
            {c: cells[c].state() for c in CELLS}
        cells["cell-2"].stop()
        assert wait(lambda: all_see("dead", "cell-2", others), 25), {c: cells[c].views for c in others}
        assert any(v.get("cell-2", [None])[0] == "suspect" for c in others for v in cells[c].history)
        # back on its own port (the address the others knew), unless something took it meanwhile
        port = cells["cell-2"].port
        assert start("cell-2", port, [seed]) or start("cell-2", 0, [seed]), cells["cell-2"].state()
        assert wait(lambda: all_see("alive", "cell-2", CELLS[:2] + CELLS[3:])
                     and all_see("alive", "cell-0", ["cell-2"]), 25), {c: cells[c].state() for c in CELLS}
        assert all(cells[c].views["cell-2"][1] >= 1 for c in others)   # rejoined with a new incarnation
    finally:
        for c in cells.values():
            c.stop()


def test_a_port_in_use_is_a_clear_error_not_a_traceback(tmp_path):
    tls = str(tmp_path / "tls")
    init_mesh(tls, ["cell-0"])
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "becomingone.mesh.swimnet", "--tls", tls, "--cell", "cell-0",
                            "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
                           timeout=30)
    finally:
        held.close()
    assert r.returncode == 2, r
    assert "swimnet: cannot listen on 127.0.0.1:%d" % port in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == "", r
