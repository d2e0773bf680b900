"""Packaging for users who do not run `becomingone flash` on a Pico: the mip package.json, the
freeze manifests (MicroPython manifest format) and the pizero install bundle."""
import configparser
import json
import os
import stat
import tarfile

import pytest

from becomingone.cli import main as cli
from becomingone.ingest.keystore import Keystore
from tools.deploy import mip_package
from becomingone.deploy import plan as P

ROOT = P.ROOT


def test_package_json_is_up_to_date_and_complete():
    with open(os.path.join(ROOT, "package.json")) as f:
        text = f.read()
    assert text == mip_package.render(), "package.json is stale: run `python -m tools.deploy.mip_package --write`"
    d = json.loads(text)
    targets = [t for t, _src in d["urls"]]
    assert targets == [src for _t, src in d["urls"]]  # relative URLs: forks and local installs work
    for t in targets:
        assert os.path.isfile(os.path.join(ROOT, t)), t
    # everything a board needs is in it: the flash set of every MicroPython board
    for board in ("emulator", "pico", "pico_w"):
        if os.path.exists(P.board_module_path(board)):
            assert set(P.source_modules(board)) <= set(targets), board
    assert mip_package.main(["--check"]) == 0


def _frozen_files(manifest):
    """Evaluate a manifest the way micropython/tools/manifestfile.py does (chdir to the
    manifest's folder; package/module paths relative to base_path) -> target paths."""
    out = []
    here = os.path.dirname(os.path.abspath(manifest))

    def package(package_path, files=None, base_path=".", opt=None):
        base = os.path.normpath(os.path.join(here, base_path))
        if files is not None:
            for f in files:
                p = os.path.join(base, package_path, f)
                assert os.path.isfile(p), "manifest names a missing file: %s" % p
                out.append(package_path + "/" + f)
            return
        top = os.path.join(base, package_path)
        assert os.path.isdir(top), "manifest names a missing package: %s" % top
        for dirpath, _d, filenames in os.walk(top):
            for f in filenames:
                if f.endswith(".py"):
                    out.append(os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/"))

    def include(path, **kw):
        assert path.startswith(("$(PORT_DIR)", "$(BOARD_DIR)")), path

    def module(path, base_path=".", opt=None):
        out.append(path)

    def forbidden(*a, **k):
        raise AssertionError("unexpected manifest call")

    g = {"package": package, "include": include, "module": module, "require": forbidden,
         "freeze": forbidden, "metadata": forbidden, "options": None}
    with open(manifest) as f:
        exec(compile(f.read(), manifest, "exec"), g)
    return sorted(out)


@pytest.mark.parametrize("board", ["pico", "pico_w"])
def test_freeze_manifest_freezes_what_flash_deploys(board):
    manifest = os.path.join(ROOT, "boards", "manifest_%s.py" % board)
    if not os.path.exists(P.board_module_path(board)):
        pytest.skip("boards/%s.py is not in the tree yet" % board)
    assert _frozen_files(manifest) == sorted(P.source_modules(board))


def test_pizero_bundle(tmp_path, capsys):
    if not os.path.exists(P.board_module_path("pizero")):
        pytest.skip("boards/pizero.py is not in the tree yet")
    data, out = tmp_path / "data", tmp_path / "bundle"
    rc = cli(["flash", "--board", "pizero", "--host-url", "udp://192.168.1.20:18790", "--data", str(data),
              "--out", str(out), "--device-id", "7", "--dry-run"])
    assert rc == 0 and not out.exists() and not data.exists()
    assert "install.sh" in capsys.readouterr().out
    rc = cli(["flash", "--board", "pizero", "--host-url", "udp://192.168.1.20:18790", "--data", str(data),
              "--out", str(out), "--device-id", "7"])
    text = capsys.readouterr().out
    assert rc == 0
    key = Keystore(str(data / "keys.json")).get(7)
    assert (out / "device.key").read_bytes() == key and key.hex() not in text
    assert stat.S_IMODE(os.stat(out / "device.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(out) + ".tar.gz").st_mode) == 0o600
    for rel in P.source_modules("pizero"):
        assert (out / rel).read_bytes() == open(os.path.join(ROOT, rel), "rb").read()
    cfg = json.loads((out / "boardcfg.json").read_text())
    # fs written out: the board's default rate (the landed bundle wrote none and the firmware's
    # default 1000 Hz exceeded the ADS1115's 860: the service failed at every start)
    assert cfg == {"board": "pizero", "device_id": 7, "link": "udp://192.168.1.20:18790",
                   "key_file": "device.key", "fs": 860}
    assert (out / "start.py").read_bytes() == P.root_main_source()
    unit = configparser.ConfigParser()
    unit.read_string((out / "becomingone-device.service").read_text())
    svc = unit["Service"]
    assert svc["ExecStart"].endswith("start.py") and svc["Restart"] == "always"
    # systemd is the Pi's watchdog: Type=notify, the firmware pings it (device/hw/sdnotify.py)
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main" and svc["WatchdogSec"] == "10"
    assert svc["StateDirectory"] == "becomingone-device"       # the QUARANTINE latch file
    assert "reset-cause" in svc["ExecStopPost"] and "watchdog" in svc["ExecStopPost"]
    assert "@" not in (out / "becomingone-device.service").read_text()
    with tarfile.open(str(out) + ".tar.gz") as tar:
        names = tar.getnames()
        assert "bundle/device.key" in names and "bundle/install.sh" in names
        assert tar.getmember("bundle/device.key").mode & 0o077 == 0
    assert "scp" in text and "install.sh" in text


def test_pizero_bundle_start_py_runs_the_firmware_on_cpython(tmp_path, capsys):
    """start.py of the bundle on CPython (as systemd runs it), with the board swapped for the
    emulator (no I2C here): the bundled sources are complete and the HELLO reaches a host."""
    import shutil
    import socket
    import subprocess
    import sys

    from shared import protocol
    from shared.auth import Auth

    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    host.settimeout(20)
    data, out = tmp_path / "data", tmp_path / "pz"
    rc = cli(["flash", "--board", "pizero", "--host-url", "udp://127.0.0.1:%d" % host.getsockname()[1],
              "--data", str(data), "--out", str(out), "--device-id", "12", "--set", "beats=30",
              "--set", "clock=virtual", "--set", "boot_grace_ms=0", "--set", "quiet=true"])
    capsys.readouterr()
    assert rc == 0
    cfg = json.loads((out / "boardcfg.json").read_text())
    cfg["board"] = "emulator"
    (out / "boardcfg.json").write_text(json.dumps(cfg))
    shutil.copy(os.path.join(ROOT, "boards", "emulator.py"), str(out / "boards" / "emulator.py"))
    p = subprocess.run([sys.executable, "-I", "start.py"], cwd=str(out), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    key = Keystore(str(data / "keys.json")).get(12)
    f = protocol.decode(host.recvfrom(2048)[0], auth={12: Auth(key)})
    host.close()
    assert f.type == protocol.HELLO and f.device_id == 12
