"""Replays issue 12's crash loop: a real coordinator (`becomingone run`) on 127.0.0.1 whose device
config history holds a CONFIG the device cannot take (alert_threshold 0.9, above quarantine 0.85,
as an older host stored it), and the real firmware (MicroPython unix port, precompiled as on a
board) under a supervisor that restarts it whenever it exits, as a watchdog reset would.

On the landed code the device applied part of the CONFIG, raised, the process died, the host
sent the CONFIG again at the next HELLO: a crash loop.  Used by tests/test_config_crashloop_e2e.py
and runnable by hand against any checkout (the figures in docs/DEVICE.md "Faults"):

    python -m tests.crashloop_replay --root /path/to/checkout --seconds 60
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BAD = {"alert_threshold": [0.6, 0.9]}


def _mpy():
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return exe if os.path.exists(exe) else "micropython"


def seed_history(data, device_id=1, delta=None):
    """devconfig.json as a host that did not check CONFIGs as a whole left it."""
    os.makedirs(data, exist_ok=True)
    doc = {"devices": {str(device_id): {"position": 1, "events": [
        {"version": 1, "delta": delta or BAD, "t": time.time(), "note": "stored by an older host"}]}},
        "cfg_seq": {str(device_id): 1}}
    with open(os.path.join(data, "devconfig.json"), "w") as f:
        json.dump(doc, f)


def start_coordinator(root, data):
    p = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "run", "--data", data, "--link",
                          "udp://127.0.0.1:0", "--set", "security.intrinsic=false"],
                         cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, BECOMINGONE_HTTP="off", PYTHONPATH=root))
    line = ""
    while not line.startswith("ready "):
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("coordinator did not start: " + p.stderr.read()[-800:])
    info = json.loads(line[6:])
    return p, info["links"][0]


def firmware(root, out):
    """The firmware of `root` precompiled for this machine (its own build tool)."""
    r = subprocess.run([sys.executable, "-c", "import sys; from becomingone.emulate.firmware import "
                        "build_firmware; print(build_firmware(sys.argv[1]))", out],
                       cwd=root, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=root))
    if r.returncode != 0:
        raise RuntimeError("firmware build failed: " + r.stderr[-800:])
    return r.stdout.strip().splitlines()[-1]


class Supervisor:
    """Runs the firmware and starts it again whenever it exits (a reset), counting restarts
    and how long the device was down; `reboot()` kills it on purpose (a power cycle)."""

    def __init__(self, main, link, root, log, device_id=1, extra=()):
        self.argv = [_mpy(), "-X", "heapsize=192K", main, "--board", "emulator", "--beats", "0",
                     "--link", link, "--device-id", str(device_id), "--pow-bits", "0"] + \
            list(extra)
        self.root = root
        self.log = log
        self.proc = None
        self.boots = 0
        self.restarts = 0        # exits the supervisor did not ask for
        self.exit_codes = []
        self.reports = []

    def _start(self):
        self.boots += 1
        self.out = open(self.log + ".%d" % self.boots, "w+b")
        self.proc = subprocess.Popen(self.argv, cwd=self.root, stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _report(self):
        self.out.seek(0)
        for ln in reversed(self.out.read().decode(errors="replace").splitlines()):
            if ln.startswith("{"):
                try:
                    self.reports.append(json.loads(ln))
                except ValueError:
                    pass
                return

    def run_for(self, seconds):
        if self.proc is None:
            self._start()
        t_end = time.time() + seconds
        while time.time() < t_end:
            rc = self.proc.poll()
            if rc is not None:
                self.restarts += 1
                self.exit_codes.append(rc)
                self._report()
                self._start()
            time.sleep(0.01)

    def stop(self, sig=signal.SIGINT):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._report()
        self.proc = None

    def reboot(self):
        self.stop(signal.SIGKILL)
        self._start()


def cli(root, *args):
    return subprocess.run([sys.executable, "-m", "becomingone.cli"] + list(args), cwd=root,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=root))


def replay(root=ROOT, seconds=10.0, workdir=None, during=None):
    """The crash-loop replay on the checkout at `root`; returns its figures.  during(data) runs
    once the device is up (e.g. CLI commands against the running coordinator)."""
    wd = workdir or tempfile.mkdtemp(prefix="crashloop-")
    data = os.path.join(wd, "data")
    seed_history(data)
    main = firmware(root, os.path.join(wd, "fw"))
    coord, link = start_coordinator(root, data)
    extra = []
    with open(os.path.join(root, "device", "cli.py")) as f:
        if "--state-dir" in f.read():         # the board's folder: reset cause, latch
            os.makedirs(os.path.join(wd, "board"))
            extra = ["--state-dir", os.path.join(wd, "board")]
    sup = Supervisor(main, link, root, os.path.join(wd, "device.log"), extra=extra)
    out = None
    try:
        sup.run_for(seconds / 2)
        if during is not None:
            out = during(data)
        sup.reboot()                      # a reboot: a new HELLO, a chance to resend
        sup.run_for(seconds / 2)
        sup.stop()
        st = subprocess.run([sys.executable, "-m", "becomingone.cli", "status", "--data", data,
                             "--json"], cwd=root, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=root))
        status = json.loads(st.stdout) if st.returncode == 0 else {}
    finally:
        sup.stop()
        coord.send_signal(signal.SIGTERM)
        try:
            coord.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            coord.kill()
    with open(os.path.join(data, "devconfig.json")) as f:
        hist = json.load(f)
    return {"seconds": seconds, "boots": sup.boots, "restarts": sup.restarts,
            "exit_codes": sup.exit_codes, "reports": sup.reports, "during": out,
            "devconfig": (status.get("devconfig") or {}), "history": hist, "workdir": wd,
            "status": status}


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=ROOT, help="the checkout to replay (default: this one)")
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args(argv)
    r = replay(os.path.abspath(a.root), a.seconds)
    r.pop("reports")
    print(json.dumps({k: r[k] for k in ("seconds", "boots", "restarts", "devconfig")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
