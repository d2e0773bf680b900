"""Three real coordinators (`becomingone run`, sync.mesh_enabled, certificates from `becomingone
mesh init`) as separate processes on loopback: they become members of each other (ledger keys
pinned on first contact), replicate each other's ledgers up to the signed size, agree on
T_global (fed by a fake device's telemetry at cell-1); a SIGKILLed cell is suspected, then dead,
and the pulse P that cell-1 sends its device (CONFIG pulse_p) follows the mesh size 3 -> 2 -> 3
when the cell is restarted and rejoins."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import yaml

from becomingone.coordinator.control import request
from shared import protocol as P
from tests.test_coordinator import HELLO, FakeDevice, tel
from tests.test_mesh_node_procs import wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["cell-0", "cell-1", "cell-2"]
PULSE_P = 18          # CONFIG key id of pulse_p (shared/protocol_codes.py), Q16


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(base, name, mesh_port, seed_port, tls, extra=None):
    cfg = {"becomingone": {"name": name}, "data_dir": os.path.join(base, name),
           "security": {"intrinsic": False}, "ledger": {"pulse_summary_every": 0},
           "devices": {"session_timeout_s": 120.0},
           "sync": {"mesh_enabled": True,
                    "mesh": {"port": mesh_port, "listen": "127.0.0.1", "tls_dir": tls, "interval": 0.2,
                             "probe_timeout": 0.25, "checkpoint_interval": 0.5,
                             "peers": [] if seed_port is None else [{"host": "127.0.0.1", "port": seed_port}]}}}
    for k, v in (extra or {}).items():
        cfg["sync"][k] = v
    path = os.path.join(base, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


class Cell:
    def __init__(self, base, name, config):
        self.base, self.name, self.config = base, name, config
        self.data = os.path.join(base, name)
        self.ready = os.path.join(base, name + ".ready")
        self.proc = None

    def start(self):
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "becomingone.cli", "run", "--config", self.config, "--link", "udp://127.0.0.1:0",
             "--ready-file", self.ready, "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def info(self):
        with open(self.ready) as f:
            return json.load(f)

    def mesh(self):
        try:
            return request(os.path.join(self.data, "control.sock"), {"cmd": "status"}, timeout=5)["mesh"]
        except Exception:
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)           # by PID: the process we started
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def why(self):
        if self.proc.poll() is not None:
            return "%s exited %s: %s" % (self.name, self.proc.returncode, self.proc.stderr.read()[-2000:])
        return "%s running" % self.name


class Device(FakeDevice):
    """Reads every host frame in a thread, ACKs CONFIG, keeps the pulse_p values it was sent."""

    def __init__(self, addr):
        super().__init__(addr, device_id=5, boot_id=0x1234)
        self.sock.settimeout(0.2)
        self.pulse_p, self.stop_ev = [], threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop_ev.is_set():
            try:
                data = self.sock.recv(512)
            except socket.timeout:
                continue
            except OSError:
                return
            f = P.decode(data)
            if f.type == P.CONFIG:
                for k, v in f.fields["pairs"]:
                    if k == PULSE_P:
                        self.pulse_p.append(v / 65536.0)
                self.sock.sendto(self.frame(P.ACK, {"acked_type": P.CONFIG, "status": P.ACK_OK,
                                                    "ref": f.fields["config_version"]}), self.addr)


def ledger_rows(path, where):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return [json.loads(r[0]) for r in con.execute("SELECT data FROM entries WHERE data LIKE ?", (where,))]
    finally:
        con.close()


def agree(cells, names):
    st = {n: cells[n].mesh() for n in names}
    if any(s is None for s in st.values()):
        return False
    for n, s in st.items():
        if any(s["members"].get(o, {}).get("state") != "alive" for o in names):
            return False
        for o in names:            # each holds the others' ledgers up to their signed size, verified
            if o == n:
                continue
            row, signed = s["replicas"].get(o), st[o]["ledger"]["signed"]
            if not row or row["mode"] != "replica" or not row["verified"] or row["size"] < signed or signed < 2:
                return False
    tg = [tuple(s["t_global"]) for s in st.values()]
    return abs(tg[0][0]) > 0 and all(max(abs(a - b) for a, b in zip(t, tg[0])) < 1e-9 for t in tg)


@pytest.mark.slow
def test_three_coordinators_mesh_kill_and_rejoin(tmp_path):
    base = str(tmp_path)
    tls = os.path.join(base, "tls")
    out = subprocess.run([sys.executable, "-m", "becomingone.cli", "mesh", "init", "--dir", tls, "--cells", ",".join(NAMES)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ports = {n: free_port() for n in NAMES}
    cells = {n: Cell(base, n, write_config(base, n, ports[n], None if n == "cell-0" else ports["cell-0"], tls))
             for n in NAMES}
    dev = None
    try:
        for c in cells.values():
            c.start()
        assert wait(lambda: all(os.path.exists(c.ready) for c in cells.values()), 30), \
            [c.why() for c in cells.values()]
        host, port = cells["cell-1"].info()["links"][0][6:].rsplit(":", 1)
        dev = Device((host, int(port)))
        dev.thread.start()
        dev.send(P.HELLO, HELLO)
        # 32 KAIROS samples a beat at f_k = 1 kHz: the stream holds > 9 s, so the sync layer's
        # 10 s window exists (fill >= 90 %) and the cell has a T_sync to publish
        for b in range(1, 400):
            dev.send(P.TELEMETRY, dict(tel(b), n_samples=32))
        assert wait(lambda: agree(cells, NAMES), 40), {n: c.mesh() for n, c in cells.items()}
        st1 = cells["cell-1"].mesh()
        assert st1["weights"] == {"cell-0": 0.0, "cell-1": 1.0, "cell-2": 0.0}
        assert st1["alive"] == 3 and st1["pulse"]["P"] == 3.0
        assert wait(lambda: dev.pulse_p and dev.pulse_p[-1] == 3.0, 10), dev.pulse_p

        # SIGKILL cell-2: suspected, then dead at both others; the device is told P = 2
        cells["cell-2"].kill()
        seen = {n: set() for n in ("cell-0", "cell-1")}

        def dead():
            for n in seen:
                s = cells[n].mesh()
                seen[n].add(s["members"]["cell-2"]["state"])
            return all("dead" in v for v in seen.values())
        assert wait(dead, 20), seen
        assert all("suspect" in v for v in seen.values()), seen
        assert wait(lambda: dev.pulse_p[-1] == 2.0, 10), dev.pulse_p
        # restart: it rejoins (a higher incarnation refutes "dead") and P is 3 again
        cells["cell-2"].start()
        assert wait(lambda: all((cells[n].mesh() or {}).get("members", {}).get("cell-2", {}).get("state")
                                == "alive" for n in ("cell-0", "cell-1")), 30), [c.why() for c in cells.values()]
        assert wait(lambda: dev.pulse_p[-1] == 3.0, 15), dev.pulse_p
    finally:
        if dev is not None:
            dev.stop_ev.set()
        for c in cells.values():
            c.stop()
    # cell-1's ledger recorded each pulse change once, for the cell (old and new period), and
    # not once more per device
    led = os.path.join(base, "cell-1", "ledger.sqlite")
    rows = ledger_rows(led, '%"target":"mesh:pulse"%')
    assert [d["change"]["pulse_p"][1] for d in rows][-3:] == [3.0, 2.0, 3.0], rows
    assert [(d["period_us_before"], d["period_us"]) for d in rows][-2:] == [(4364, 4571), (4571, 4364)]
    assert not [d for d in ledger_rows(led, '%"target":"device:5"%') if "pulse_p" in d["change"]]
