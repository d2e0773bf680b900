"""The Pi Zero's watchdog is systemd: the firmware speaks sd_notify (READY=1 once built,
WATCHDOG=1 from the beat), and a watchdog kill recorded by the unit's ExecStopPost makes the next
start report reset cause WATCHDOG and start in QUARANTINE (deploy/systemd/becomingone-device.service,
device/hw/sdnotify.py, device/latch.py)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(ROOT, "deploy", "systemd", "becomingone-device.service")


def test_firmware_notifies_ready_and_pings_the_watchdog(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    t0 = time.monotonic()
    # a Pi Zero's rate (the emulator at 12 kHz is more Python per beat than this test is about)
    p = subprocess.Popen([sys.executable, "device/main.py", "--board", "emulator", "--beats",
                          "400", "--fs", "1000", "--link", "none", "--state-dir", str(tmp_path)],
                         cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    msgs = []
    try:
        while time.monotonic() - t0 < 20:
            try:
                msgs.append((time.monotonic(), sock.recv(256).decode()))
            except socket.timeout:
                break
            if p.poll() is not None and len(msgs) > 1:
                try:
                    sock.settimeout(0.2)
                    while True:
                        msgs.append((time.monotonic(), sock.recv(256).decode()))
                except socket.timeout:
                    break
    finally:
        out, err = p.communicate(timeout=30)
        sock.close()
    assert p.returncode == 0, err.decode()[-500:]
    assert msgs[0][1].startswith("READY=1") and "STATUS=beat running" in msgs[0][1]
    pings = [t for t, m in msgs if m == "WATCHDOG=1"]
    # 400 beats of 4.21 ms = 1.7 s at one ping per WatchdogSec/2 = 100 ms at most
    assert 8 <= len(pings) <= 20, len(pings)
    gaps = sorted(b - a for a, b in zip(pings, pings[1:]))     # receive times: jittery
    assert gaps[len(gaps) // 2] >= 0.09, gaps


def test_watchdog_kill_recorded_by_the_unit_restarts_in_quarantine(tmp_path):
    # what the unit's ExecStopPost writes when systemd killed the service for its watchdog
    (tmp_path / "reset-cause").write_text("watchdog\n")
    p = subprocess.run([sys.executable, "device/main.py", "--board", "emulator", "--beats", "50",
                        "--link", "none", "--clock", "virtual", "--state-dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-500:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["boot"]["reset_cause"] == "watchdog" and r["boot"]["restored"]
    assert r["quarantined"] is True                     # until the host's CLEAR
    assert not (tmp_path / "reset-cause").exists() and (tmp_path / "latch").exists()
    # the next start (no new cause) is still latched: the file holds it
    p = subprocess.run([sys.executable, "device/main.py", "--board", "emulator", "--beats", "10",
                        "--link", "none", "--clock", "virtual", "--state-dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["quarantined"] is True and r["boot"]["reset_cause"] == "unknown"


def test_device_unit_systemd_analyze_verify(tmp_path):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze not installed")
    from becomingone.deploy.pizero import service_unit
    text = service_unit(7, user="root", directory=str(tmp_path)).replace(
        str(tmp_path) + "/venv/bin/python", sys.executable)
    (tmp_path / "start.py").write_text("")
    unit = tmp_path / "becomingone-device.service"
    unit.write_text(text)
    out = subprocess.run([sa, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Unknown" not in out.stderr, out.stderr
