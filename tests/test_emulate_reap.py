"""`becomingone emulate` reaps its device processes on every exit path (issue 15): stdout
closed by `| head` (BrokenPipeError), SIGHUP (the terminal went away), SIGKILL of the emulation
itself (the devices carry a parent-death signal); and a fault naming a device that does not
exist is an error."""
import os
import signal
import subprocess
import sys
import time

import pytest

from becomingone.emulate.faults import parse_faults
from becomingone.emulate.runner import Emulation
from becomingone.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "becomingone.cli"]


def _devices_of(data_dir):
    """PIDs of firmware processes whose command line names this emulation's data folder."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"device/main.py" in c or c.endswith(b"/main.py") for c in cmd) and \
                any(data_dir.encode() in c for c in cmd):
            out.append(int(pid))
    return out


def _wait_devices(data_dir, n, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(_devices_of(data_dir)) >= n:
            return True
        time.sleep(0.2)
    return False


def _no_orphans(data_dir, timeout=20):
    end = time.monotonic() + timeout
    left = _devices_of(data_dir)
    while left and time.monotonic() < end:
        time.sleep(0.2)
        left = _devices_of(data_dir)
    for pid in left:                   # ours: clean up before failing
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def _args(data):
    return CLI + ["emulate", "--devices", "2", "--duration", "60", "--runtime", "cpython",
                  "--no-http", "--no-live", "--data", data]


def test_emulate_piped_into_head_leaves_no_device_processes(tmp_path):
    data = str(tmp_path / "emu")
    # head -n 2 exits after the banner and the first progress line: the next print fails
    p = subprocess.Popen("%s | head -n 2" % " ".join(_args(data)), shell=True, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert b"emulating 2 device(s)" in out
    assert _no_orphans(data) == []


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL])
def test_emulate_killed_or_hung_up_leaves_no_device_processes(tmp_path, sig):
    data = str(tmp_path / "emu")
    p = subprocess.Popen(_args(data), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_devices(data, 2), "the device processes did not start"
        os.kill(p.pid, sig)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert _no_orphans(data) == []


def test_fault_spec_naming_a_missing_device_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"no device 9 \(allowed: 1\.\.3"):
        Emulation(devices=3, faults=parse_faults("fault=9@5"), data_dir=str(tmp_path))
    with pytest.raises(UserError, match="no device 4"):
        Emulation(devices=3, faults=parse_faults("flood=4"), data_dir=str(tmp_path))
    r = subprocess.run(CLI + ["emulate", "--devices", "3", "--faults", "reboot=7@2", "--data",
                              str(tmp_path / "e")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "no device 7" in r.stderr and "Traceback" not in r.stderr
