"""`becomingone run` under systemd's notify protocol: READY=1 once it listens, WATCHDOG=1 from
its processing loop every WatchdogSec/2, STOPPING=1 at the end (a real process and a real
AF_UNIX datagram socket standing in for systemd)."""
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_notifies_ready_watchdog_and_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000", BECOMINGONE_HTTP="off")
    env.pop("WATCHDOG_PID", None)
    p = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "run", "--data",
                          str(tmp_path / "data"), "--link", "udp://127.0.0.1:0", "--duration", "3",
                          "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    msgs = []
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                msgs.append(sock.recv(4096).decode())
            except socket.timeout:
                break
            if "STOPPING=1" in msgs[-1]:
                break
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sock.close()
    assert p.returncode == 0, err
    assert msgs and msgs[0].startswith("READY=1") and "MAINPID=%d" % p.pid in msgs[0]
    assert out.decode().startswith("ready ")             # the notify came with the ready line
    assert sum(m == "WATCHDOG=1" for m in msgs) >= 4    # 3 s at one ping per 0.2 s
    assert msgs[-1] == "STOPPING=1"
