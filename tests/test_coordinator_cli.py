"""`becomingone run` as a process: ready line, control socket commands, SIGTERM shutdown."""
import json
import os
import signal
import socket
import subprocess
import sys

from tests.test_coordinator import HELLO, FakeDevice, tel, wait
from shared import protocol as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "becomingone.cli", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("exit %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    return r


def test_run_device_status_sigterm(tmp_path):
    data = str(tmp_path / "d")
    ready = str(tmp_path / "ready.json")
    p = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "run", "--data", data, "--link",
                          "udp://127.0.0.1:0", "--ready-file", ready, "--set",
                          "security.intrinsic=false"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.startswith("ready "):
            line = p.stdout.readline()
            assert line, p.stderr.read()
        info = json.loads(line[6:])
        assert info["data_dir"] == data and os.path.exists(ready)
        host, port = info["links"][0][6:].rsplit(":", 1)
        dev = FakeDevice((host, int(port)), device_id=3)
        dev.send(P.HELLO, HELLO)
        for b in range(1, 11):
            dev.send(P.TELEMETRY, tel(b))
        dev.recv(P.TIME_SYNC)
        assert wait(lambda: json.loads(cli("device", "list", "--data", data, "--json").stdout)[0]
                    ["frames"] >= 11)
        r = cli("device", "config", "3", "pow_bits=14", "--data", data)
        assert "sent: pow_bits=14" in r.stdout
        assert dev.recv(P.CONFIG).fields["pairs"] == [[2, 14]]
        r = cli("device", "config", "3", "bogus=1", "--data", data, check=False)
        assert r.returncode == 2 and r.stderr.startswith("becomingone: unknown config key")
        st = json.loads(cli("status", "--data", data, "--json").stdout)
        assert st["running"] and st["devices_seen"] == 1
        r = cli("device", "keys", "add", "9", "--data", data)
        assert "stored" in r.stdout
        r = cli("device", "keys", "list", "--data", data)
        key = json.load(open(os.path.join(data, "keys.json")))["devices"]["9"]
        assert key not in r.stdout and key not in r.stderr and r.stdout.split()[0] == "9"
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "stopped; devices 1" in out
    assert not os.path.exists(ready)
    r = cli("status", "--data", data, "--verify")
    assert "stopped" in r.stdout and "verify: ok" in r.stdout


def test_cli_errors(tmp_path):
    r = cli("device", "list", "--data", str(tmp_path), check=False)
    assert r.returncode == 2 and "no coordinator is running" in r.stderr
    r = cli("status", "--data", str(tmp_path), check=False)
    assert r.returncode == 2 and "no coordinator state" in r.stderr
    r = cli("run", "--data", str(tmp_path), "--link", "ftp://x", check=False)
    assert r.returncode == 2 and "becomingone:" in r.stderr and "Traceback" not in r.stderr
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    url = "udp://127.0.0.1:%d" % busy.getsockname()[1]
    r = cli("run", "--data", str(tmp_path), "--link", url, "--duration", "1", check=False)
    busy.close()
    assert r.returncode == 2 and "cannot listen on" in r.stderr
