"""The fake board (MicroPython unix port in a bubblewrap sandbox on a pty) speaks enough of
a real board's REPL for mpremote, and is confined to its board folder."""
import os
import subprocess
import sys
import time

import pytest

from tools.deploy.fakeboard_host import FakeBoard, missing_tools

MISSING = missing_tools()
pytestmark = pytest.mark.skipif(bool(MISSING), reason="fake board needs: " + ", ".join(MISSING))
MPREMOTE = [sys.executable, "-m", "mpremote"]


def mpremote(port, *args, timeout=30):
    p = subprocess.run(MPREMOTE + ["connect", port] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def board(tmp_path):
    d = tmp_path / "board"
    d.mkdir()
    fb = FakeBoard(str(d), link=str(tmp_path / "ttyFAKE"))
    fb.start()
    try:
        fb.wait_console(b">>> ", 15)
        yield fb, d
    finally:
        fb.stop()


def test_mpremote_roundtrip_cp_ls_cat_rm(board, tmp_path):
    fb, d = board
    src = tmp_path / "data.bin"
    payload = bytes(range(256)) * 20  # every byte value, more than one raw-paste window
    src.write_bytes(payload)
    rc, out, err = mpremote(fb.port, "fs", "mkdir", ":lib", "+", "fs", "cp", str(src), ":lib/data.bin",
                            "+", "fs", "ls", ":lib")
    assert rc == 0, err
    assert "data.bin" in out
    assert (d / "lib" / "data.bin").read_bytes() == payload
    back = tmp_path / "back.bin"
    rc, out, err = mpremote(fb.port, "fs", "cp", ":lib/data.bin", str(back))
    assert rc == 0, err
    assert back.read_bytes() == payload
    rc, out, err = mpremote(fb.port, "fs", "rm", ":lib/data.bin", "+", "fs", "rmdir", ":lib")
    assert rc == 0, err
    assert not (d / "lib").exists()
    rc, out, err = mpremote(fb.port, "exec", "print(6*7)")
    assert rc == 0 and out.strip() == "42", (out, err)
    rc, out, err = mpremote(fb.port, "exec", "1/0")
    assert rc != 0 and "ZeroDivisionError" in (out + err)


def test_confined_to_board_folder(board, tmp_path):
    fb, d = board
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    # the host's files are not there at all; "/" is the board folder
    rc, out, err = mpremote(fb.port, "fs", "cat", ":" + str(outside))
    assert rc != 0
    rc, out, err = mpremote(fb.port, "exec", "f=open('/marker.txt','w'); f.write('x'); f.close()")
    assert rc == 0, err
    assert (d / "marker.txt").read_text() == "x"
    # the runtime under /.rt is read-only
    rc, out, err = mpremote(fb.port, "exec", "open('/.rt/usr/x','w')")
    assert rc != 0 and "OSError" in (out + err)
    assert not os.path.exists("/usr/x")


def test_reset_boots_main_and_mpremote_interrupts_it(board):
    fb, d = board
    (d / "main.py").write_text("print('MAIN UP')\nimport time\nwhile True:\n    time.sleep(0.05)\n")
    rc, out, err = mpremote(fb.port, "reset")
    assert rc == 0, err
    fb.wait_console(b"MAIN UP", 15)
    assert fb.boots == 2 and fb.exit_codes[:1] == [42]
    # main.py loops forever: mpremote's Ctrl-C must still get the raw REPL
    t = time.monotonic()
    rc, out, err = mpremote(fb.port, "exec", "print('after')")
    assert rc == 0 and out.strip() == "after", (out, err)
    assert time.monotonic() - t < 10
