"""Deploy for real: `tools/flash.py` (= `becomingone flash`) against a fake board (the MicroPython
unix port confined by bubblewrap to its board folder, on a pty): the compiled files, the board
config and the key land in the board folder, the key equals the keystore's and is never printed,
the board resets, boots the firmware, and its authenticated HELLO reaches a UDP socket here.
Also `mpremote mip install` of package.json onto the same kind of board."""
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from becomingone.ingest.keystore import Keystore
from shared import protocol
from shared.auth import Auth
from becomingone.deploy import plan as P
from tools.deploy.fakeboard_host import FakeBoard, missing_tools

MISSING = missing_tools()
pytestmark = pytest.mark.skipif(bool(MISSING), reason="fake board needs: " + ", ".join(MISSING))
ROOT = P.ROOT


@pytest.fixture
def fakeboard(tmp_path):
    d = tmp_path / "board"
    d.mkdir()
    fb = FakeBoard(str(d), network=True, link=str(tmp_path / "ttyFAKE"))
    fb.start()
    try:
        fb.wait_console(b">>> ", 15)
        yield fb, d
    finally:
        fb.stop()


def _udp_host():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _wait_hello(sock, key, device_id, timeout):
    auth = Auth(key)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data, _addr = sock.recvfrom(2048)
        except socket.timeout:
            break
        f = protocol.decode(data, auth={device_id: auth})  # the tag must verify with the key
        seen.append(f.name)
        if f.type == protocol.HELLO:
            return f, seen
    raise AssertionError("no HELLO within %.0f s (frames seen: %s)" % (timeout, seen))


def test_flash_lands_files_boots_and_hello_reaches_host(fakeboard, tmp_path):
    fb, board = fakeboard
    data = tmp_path / "hostdata"
    host = _udp_host()
    port = host.getsockname()[1]
    expected = P.source_modules("emulator")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "emulator",
                        "--port", fb.port, "--data", str(data), "--device-id", "23",
                        "--host-url", "udp://127.0.0.1:%d" % port, "--set", "boot_grace_ms=200",
                        "--set", "pow_bits=8"],
                       capture_output=True, timeout=60, cwd=str(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out.decode(errors="replace")
    flash_s = time.monotonic() - t0

    # files landed: every module compiled, config, key, main.py
    for rel in expected:
        f = board / (rel[:-3] + ".mpy")
        assert f.is_file() and f.read_bytes()[:2] == b"M\x06", rel
    cfg = json.loads((board / "boardcfg.json").read_text())
    assert cfg["board"] == "emulator" and cfg["device_id"] == 23
    assert cfg["link"] == "udp://127.0.0.1:%d" % port
    assert (board / "main.py").read_bytes() == P.root_main_source()

    # the key on the board is the one registered in the keystore (0600), never printed
    ks_path = data / "keys.json"
    assert stat.S_IMODE(os.stat(ks_path).st_mode) == 0o600
    key = Keystore(str(ks_path)).get(23)
    assert key is not None and len(key) == 32
    assert (board / "device.key").read_bytes() == key
    assert key not in out and key.hex().encode() not in out and key.hex().upper().encode() not in out
    assert key not in bytes(fb.console)

    # the board was reset (machine.reset() -> a fresh interpreter) and boots the firmware
    deadline = time.monotonic() + 10
    while fb.boots < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fb.boots == 2 and fb.exit_codes[:1] == [42]
    hello, seen = _wait_hello(host, key, 23, timeout=25)
    host.close()
    assert hello.device_id == 23 and hello.auth
    board_name = hello.fields["board"]
    assert (board_name.decode() if isinstance(board_name, bytes) else board_name).rstrip("\0") == "emulator"
    print("flash %.1f s, HELLO after %.1f s, frames %s" % (flash_s, time.monotonic() - t0, seen[:5]))

    # the running firmware (UDP link) still answers mpremote's Ctrl-C: it can be re-flashed
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", fb.port, "exec",
                        "import os; print(sorted(os.listdir('/')))"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "boardcfg.json" in p.stdout, p.stdout + p.stderr


def test_mip_install_of_package_json(fakeboard):
    fb, board = fakeboard
    pkg = os.path.join(ROOT, "package.json")
    with open(pkg) as f:
        urls = json.load(f)["urls"]
    sources = {}
    for target, src in urls:
        with open(os.path.join(ROOT, src), "rb") as f:
            sources[target] = f.read()
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", fb.port, "mip", "install",
                        "--target", "lib", pkg], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    for target, data in sources.items():
        assert (board / "lib" / target).read_bytes() == data, target
    # the installed firmware imports on the board from /lib
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", fb.port, "exec",
                        "import sys; sys.path.append('/lib'); import device.cli; "
                        "print(device.cli.parse_args(['--board', 'pico']).board)"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.strip().endswith("pico"), p.stdout + p.stderr


def test_pico_deploy_copies_armv6m_build_and_cleans_stale_files(fakeboard, tmp_path):
    """The pico's armv6m .mpy files cannot run on the fake board (x86 unix port), so this checks
    the copy only (--no-reset): what lands, stale-file removal, and re-flash with --keep-key."""
    if not os.path.exists(P.board_module_path("pico")):
        pytest.skip("boards/pico.py is not in the tree yet")
    fb, board = fakeboard
    (board / "device").mkdir()
    (board / "device" / "old_module.py").write_text("raise RuntimeError('stale')\n")
    (board / "device" / "beat.py").write_text("raise RuntimeError('stale')\n")  # would shadow beat.mpy
    data = tmp_path / "hostdata"
    args = [sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "pico", "--port", fb.port,
            "--data", str(data), "--device-id", "9", "--no-reset"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not (board / "device" / "old_module.py").exists() and not (board / "device" / "beat.py").exists()
    assert "removed stale device/old_module.py" in p.stdout
    archs = set()
    for rel in P.source_modules("pico"):
        head = (board / (rel[:-3] + ".mpy")).read_bytes()[:4]
        assert head[:2] == b"M\x06" and head[3] == 31, rel  # 31-bit small ints: a 32-bit port
        archs.add(head[2] >> 2)
    assert archs - {0}  # some modules carry native (viper) armv6m code
    key = (board / "device.key").read_bytes()
    assert key == Keystore(str(data / "keys.json")).get(9)
    assert fb.boots == 1  # --no-reset
    # re-flash: the same id is refused without a key policy, accepted with --keep-key
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "already has a key" in p.stderr
    p = subprocess.run(args + ["--keep-key"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (board / "device.key").read_bytes() == key


def test_serial_link_hello_over_the_same_port(fakeboard, tmp_path):
    """The pico's way: no --host-url, the firmware's link is the USB serial port itself (COBS
    frames on stdout). After the reset the host reads the board's port and finds the HELLO."""
    import serial

    from shared.cobs import Deframer

    fb, board = fakeboard
    data = tmp_path / "hostdata"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "emulator",
                        "--port", fb.port, "--data", str(data), "--device-id", "31",
                        "--set", "boot_grace_ms=2500", "--set", "pow_bits=8"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads((board / "boardcfg.json").read_text())["link"] == "serial"
    key = Keystore(str(data / "keys.json")).get(31)
    auth = {31: Auth(key)}
    deframer = Deframer()
    port = serial.Serial(fb.port, 115200, timeout=0.2)
    try:
        deadline = time.monotonic() + 25
        names = []
        while time.monotonic() < deadline:
            for raw in deframer.feed(port.read(4096)):
                try:
                    f = protocol.decode(raw, auth=auth)
                except Exception:
                    continue  # REPL text before the firmware took the port is not a frame
                names.append(f.name)
                if f.type == protocol.HELLO:
                    assert f.device_id == 31 and f.auth
                    break
            if "HELLO" in names:
                break
        else:
            raise AssertionError("no HELLO on the serial port within 25 s (frames: %s, console tail %r)"
                                 % (names, bytes(fb.console[-300:])))
    finally:
        port.close()

    # The serial firmware turned Ctrl-C off (binary frames on the port). Re-flashing it the
    # documented way: replug, and flash connects within the boot grace period of main.py.
    fb.power_cycle()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "emulator",
                        "--port", fb.port, "--data", str(data), "--device-id", "31", "--keep-key",
                        "--wait", "5", "--no-reset"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr + repr(bytes(fb.console[-300:]))
    assert (board / "device.key").read_bytes() == key


def test_deploy_refused_when_the_board_filesystem_is_too_small(tmp_path):
    """A board whose filesystem cannot take the firmware (statvfs on the board): refused before
    any file is written, nothing registered in the keystore."""
    fb = FakeBoard(str(tmp_path), fs_bytes=48 * 1024, link=str(tmp_path / "ttySMALL"))
    fb.start()
    try:
        fb.wait_console(b">>> ", 15)
        data = tmp_path / "hostdata"
        p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "emulator",
                            "--port", fb.port, "--data", str(data)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "bytes free; this deploy needs" in p.stderr
        assert not (data / "keys.json").exists()
        p = subprocess.run([sys.executable, "-m", "mpremote", "connect", fb.port, "exec",
                            "import os; print([n for n in os.listdir('/') if n != '.rt'])"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
    finally:
        fb.stop()
