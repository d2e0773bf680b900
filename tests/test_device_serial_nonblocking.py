"""Serial writes never block the beat: frames are buffered and written in idle time only as far
as the port takes them (device/hw/txbuf.py).  The landed firmware wrote each frame inside the
beat; on a Pico's USB CDC a host that has the port open but does not read blocked that write up
to 500 ms, on a pty or pipe for good.  Here the firmware runs in real time on a pty and on a pipe
whose other end nobody reads, under the MicroPython unix port and CPython.  And the other way
round: with the host reading the pty, every frame goes out (the pump keeps up with the beat)."""
import json
import os
import re
import subprocess
import sys
import threading
import time
import tty

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY = os.path.join(ROOT, ".venv", "bin", "micropython")
RUNTIMES = ["micropython", "cpython"]

BEATS = 2000        # 8.4 s at 4.21 ms; ~116 KB of frames, more than a pty or pipe holds


def _check(rep, wall_s):
    assert rep["beats"] == BEATS
    assert rep["link"]["send_errors"] > 0            # frames dropped (counted), not waited for
    # the landed firmware blocked for good once the port was full (the run timed out); a write
    # that waits even 100 ms skips 24 beats at once. The beats kept their schedule: the run took
    # about its 8.4 s (more on a loaded machine, where the OS also makes beats late)
    assert wall_s < 30, wall_s
    assert rep["skipped_beats"] < BEATS // 4, rep["skipped_beats"]


def _cmd(rt, firmware_main):
    if rt == "cpython":
        return [sys.executable, "device/main.py"]
    if not os.path.exists(MPY):
        pytest.skip("MicroPython unix port not installed")
    return [MPY, "-X", "heapsize=192K", firmware_main]      # .mpy, as on a board


@pytest.mark.parametrize("rt", RUNTIMES)
def test_pty_nobody_reads(rt, firmware_main):
    cmd = _cmd(rt, firmware_main)
    master, slave = os.openpty()
    path = os.ttyname(slave)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd + ["--board", "emulator", "--beats", str(BEATS),
                                 "--link", path, "--pow-bits", "0"],
                           cwd=ROOT, capture_output=True, timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 0, p.stderr.decode()[-800:]
    _check(json.loads(p.stdout.decode().strip().splitlines()[-1]), time.monotonic() - t0)


@pytest.mark.parametrize("rt", RUNTIMES)
def test_stdout_pipe_nobody_reads(rt, firmware_main):
    cmd = _cmd(rt, firmware_main)
    r, w = os.pipe()
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd + ["--board", "emulator", "--beats", str(BEATS),
                                 "--link", "serial", "--pow-bits", "0"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE,
                           timeout=120)
    finally:
        os.close(w)
        os.close(r)
    assert p.returncode == 0, p.stderr.decode()[-800:]
    _check(json.loads(p.stderr.decode().strip().splitlines()[-1]), time.monotonic() - t0)


# MicroPython interns names in pools that double (20, 40, ... 640 entries: 1,260 names in six);
# the next pool is 1,280 entries, 14,144 contiguous bytes on the 64-bit unix port, which a 192K
# heap running the firmware never has (~13 KB free, in pieces): a name interned late (the closing
# report's, a CONFIG's) past the sixth pool is a MemoryError. docs/DEVICE.md "Names".
QSTR_POOLS = 6
QSTR_ROOM_MIN = 8


def test_pty_read_by_the_host_takes_every_frame(firmware_main):
    """The firmware on the unix port over a pty the host reads: not one frame dropped.  Two
    1-byte writes an idle time (~470 B/s) left the transmit buffer full, and HELLO and WITNESS
    frames were dropped with the telemetry (1,940 send errors in 2,000 beats)."""
    cmd = _cmd("micropython", firmware_main)
    master, slave = os.openpty()
    tty.setraw(slave)                  # a serial port's bytes as they are (no CR before LF)
    path = os.ttyname(slave)
    got = bytearray()
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                got.extend(os.read(master, 65536))
            except OSError:
                return
    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        # -i: after the run, a REPL on stdin prints the interned names (qstr_info: no new name)
        p = subprocess.run(cmd[:-1] + ["-i", cmd[-1], "--board", "emulator", "--beats",
                                        str(BEATS), "--link", path, "--pow-bits", "0"],
                           cwd=ROOT, input=b"import micropython\nmicropython.qstr_info()\n",
                           capture_output=True, timeout=120)
        time.sleep(0.2)                # the last bytes the device wrote reach the reader
    finally:
        done.set()
        os.close(slave)
        t.join(2)
        os.close(master)
    assert p.returncode == 0, p.stderr.decode()[-800:]
    out = p.stdout.decode()
    rep = json.loads(next(ln for ln in out.splitlines() if ln.startswith("{")))
    assert rep["beats"] == BEATS
    from shared import cobs
    from shared import protocol
    frames = cobs.Deframer(cobs.MAX_FRAME).feed(bytes(got))
    link = rep["link"]
    assert link["send_errors"] == 0, link
    assert len(frames) == link["tx_frames"], (len(frames), link)
    assert protocol.decode(frames[0]).type == protocol.HELLO
    assert rep["skipped_beats"] < BEATS // 4, rep["skipped_beats"]
    # the names left in the pools the boot opened, after the closing report
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", out)
    assert m, out[-800:]
    pools, names = int(m.group(1)), int(m.group(2))
    room = 20 * (2 ** QSTR_POOLS - 1) - names
    assert pools <= QSTR_POOLS and room >= QSTR_ROOM_MIN, \
        "%d names interned, %d pools: %d left before a 14 KB pool" % (names, pools, room)
