"""`becomingone flash`: plan, dry run (touches nothing), provisioning inputs, the build step."""
import builtins
import json
import os
import pty
import stat
import subprocess
import sys
import threading
import tty

import pytest

from becomingone.cli import main as cli
from becomingone.ingest.keystore import Keystore
from becomingone.deploy import plan as P
from becomingone.deploy import provision as V

ROOT = P.ROOT


def _snapshot(folder):
    out = {}
    for dirpath, _d, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[p] = (st.st_mtime_ns, fh.read())
    return out


@pytest.fixture
def ks(tmp_path):
    data = tmp_path / "data"
    k = Keystore(str(data / "keys.json"))
    k.add(5)  # an existing device
    return data


def _forbid_side_effects(monkeypatch):
    def no_process(*a, **k):
        raise AssertionError("dry run spawned a process: %r" % (a[:1],))

    def no_key(n):
        raise AssertionError("dry run generated random bytes")

    real_open = builtins.open

    def ro_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            raise AssertionError("dry run opened %s for writing" % (file,))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(os, "urandom", no_key)
    monkeypatch.setattr(builtins, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", no_process)
    monkeypatch.setattr(os, "makedirs", no_process)


def test_dry_run_prints_plan_and_touches_nothing(ks, tmp_path, monkeypatch, capsys):
    before = _snapshot(str(tmp_path))
    repo_before = sorted(os.listdir(ROOT))
    _forbid_side_effects(monkeypatch)
    rc = cli(["flash", "--board", "emulator", "--port", "/dev/ttyFAKE0", "--dry-run",
              "--data", str(ks), "--host-url", "udp://127.0.0.1:18790", "--set", "fs=500"])
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert rc == 0
    assert _snapshot(str(tmp_path)) == before
    assert sorted(os.listdir(ROOT)) == repo_before
    assert "a new key would be generated and registered" in out
    assert "device id  6" in out  # next free after the existing device 5
    for rel in P.source_modules("emulator"):
        assert rel[:-3] + ".mpy" in out, rel
    for name in ("boardcfg.json", "device.key", "main.py"):
        assert name in out
    assert "mpremote connect /dev/ttyFAKE0 fs cp" in out
    assert "mpremote connect /dev/ttyFAKE0 reset" in out
    assert '"fs": 500' in out


def test_dry_run_never_shows_secrets(ks, monkeypatch, capsys):
    monkeypatch.setenv(V.ENV_SSID, "HomeNet")
    monkeypatch.setenv(V.ENV_PASSWORD, "hunter2-very-secret")
    if not os.path.exists(P.board_module_path("pico_w")):
        pytest.skip("boards/pico_w.py is not in the tree yet")
    rc = cli(["flash", "--board", "pico_w", "--port", "/dev/ttyACM0", "--dry-run", "--data", str(ks),
              "--host-url", "udp://192.168.1.20:18790", "--device-id", "5", "--keep-key"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "hunter2" not in cap.out + cap.err
    assert Keystore(str(ks / "keys.json")).get(5).hex() not in cap.out + cap.err
    assert "HomeNet" in cap.out and "password not shown" in cap.out
    assert "the key registered in" in cap.out
    assert "-march=armv6m" in cap.out


@pytest.mark.parametrize("args, msg", [
    (["--board", "pico_w", "--port", "/dev/ttyACM0", "--host-url", "udp://127.0.0.1:18790"], "loopback"),
    (["--board", "pico_w", "--port", "/dev/ttyACM0"], "--host-url"),
    (["--board", "pico", "--port", "/dev/ttyACM0", "--host-url", "udp://10.0.0.2:1"], "drop --host-url"),
    (["--board", "pico"], "--port"),
    (["--board", "pizero", "--port", "/dev/ttyACM0", "--host-url", "udp://10.0.0.2:1"], "drop --port"),
    (["--board", "emulator", "--port", "p", "--device-id", "5"], "already has a key"),
    (["--board", "emulator", "--port", "p", "--device-id", "9", "--keep-key"], "has no key"),
    (["--board", "emulator", "--port", "p", "--device-id", "0"], "1..65535"),
    (["--board", "emulator", "--port", "p", "--set", "fs=99999"], "--fs must be"),
    (["--board", "pico", "--port", "p", "--set", "fs=7000"], "nearest to 7000: 6400 or 7500 Hz"),
    (["--board", "emulator", "--port", "p", "--set", "bogus=1"], "unknown option"),
    (["--board", "emulator", "--port", "p", "--set", "link=serial"], "set by flash"),
    (["--board", "emulator", "--port", "p", "--set", "wifi_file=x.json"], "--wifi-file"),
    (["--board", "emulator", "--port", "p", "--set", "boot_grace_ms=-5"], "0..60000"),
    (["--board", "emulator", "--port", "p", "--wifi-file", "/nonexistent"], "pico_w only"),
])
def test_bad_input_is_refused_with_a_clear_message(ks, capsys, monkeypatch, args, msg):
    monkeypatch.delenv(V.ENV_SSID, raising=False)
    before = _snapshot(str(ks))
    rc = cli(["flash", "--dry-run", "--data", str(ks)] + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert msg in err
    assert _snapshot(str(ks)) == before


def test_wifi_sources(tmp_path, monkeypatch):
    env = {}
    with pytest.raises(V.UserError, match="needs Wi-Fi credentials"):
        V.load_wifi(None, environ=env)
    w = V.load_wifi(None, environ={V.ENV_SSID: "Net", V.ENV_PASSWORD: "abcdefgh"})
    assert (w["ssid"], w["password"]) == ("Net", "abcdefgh")
    j = tmp_path / "wifi.json"
    j.write_text(json.dumps({"ssid": "Lab", "password": "p" * 12, "country": "de"}))
    w = V.load_wifi(str(j), environ={})
    assert w["ssid"] == "Lab" and w["country"] == "DE"
    assert json.loads(V.wifi_bytes(w)) == {"ssid": "Lab", "password": "p" * 12, "country": "DE"}
    ini = tmp_path / "wifi.ini"
    ini.write_text("[wifi]\nssid = Shop\npassword = 0123456789\n")
    assert V.load_wifi(str(ini), environ={})["ssid"] == "Shop"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ssid": "x", "password": "secretpw-but-the-key-is-wrong", "pwd": 1}))
    with pytest.raises(V.UserError, match="unknown keys pwd"):
        V.load_wifi(str(bad), environ={})
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"ssid": "x", "password": "tiny"}))
    with pytest.raises(V.UserError) as e:
        V.load_wifi(str(short), environ={})
    assert "tiny" not in str(e.value) and "8..63" in str(e.value)
    with pytest.raises(V.UserError, match="contains ':'"):
        V.load_wifi(None, environ={V.ENV_SSID: "a:b", V.ENV_PASSWORD: "abcdefgh"})
    with pytest.raises(V.UserError, match="inside the repository"):
        V.load_wifi(os.path.join(ROOT, "pyproject.toml"), environ={})


def test_root_main_derives_the_same_flags_as_the_plan():
    src = P.root_main_source().decode()
    assert src.rstrip().endswith("_start()")
    ns = {}
    exec(compile(src.rstrip()[:-len("_start()")], "main.py", "exec"), ns)
    cfg = {"board": "pico", "device_id": 7, "link": "serial", "key_file": "device.key",
           "fs": 500, "boot_grace_ms": 200, "quiet": True}
    assert ns["_argv"](cfg) == P.device_argv(cfg)
    assert ns["_argv"](cfg) == ["--board", "pico", "--device-id", "7", "--fs", "500",
                                "--key-file", "device.key", "--link", "serial", "--quiet"]


def test_build_compiles_for_the_board_and_stages_secrets_private(tmp_path):
    cfg = {"board": "emulator", "device_id": 3, "link": "serial", "key_file": P.KEY_FILE}
    items = P.plan_items("emulator", cfg)
    for it in items:
        if it.kind == "key":
            it.data = b"k" * 32
    staging = P.build(items, "emulator", staging=str(tmp_path / "stage"))
    mpys = [it for it in items if it.kind == "mpy"]
    assert mpys and all(it.size > 0 for it in mpys)
    for it in mpys:
        with open(it.local, "rb") as f:
            head = f.read(4)
        assert head[0:1] == b"M" and head[1] == 6, it.remote  # .mpy format version 6
    key = [it for it in items if it.kind == "key"][0]
    assert stat.S_IMODE(os.stat(key.local).st_mode) == 0o600
    assert json.loads(open(os.path.join(staging, "boardcfg.json")).read()) == cfg
    assert P.check_fits(items, "emulator") == sum(it.size for it in items)
    # the pico's filesystem limit is enforced
    big = [P.Item("py", "x.py", size=2 * 1024 * 1024)]
    with pytest.raises(P.UserError, match="filesystem holds"):
        P.check_fits(big, "pico")


def test_armv6m_build_of_the_pico():
    if not os.path.exists(P.board_module_path("pico")):
        pytest.skip("boards/pico.py is not in the tree yet")
    items = [it for it in P.plan_items("pico", {"board": "pico"}) if it.kind == "mpy"]
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        P.build(items, "pico", staging=d)
        # modules with viper functions carry armv6m native code: arch field of byte 2 is set
        archs = set()
        for it in items:
            with open(it.local, "rb") as f:
                archs.add(f.read(3)[2] >> 2)
        assert archs - {0}, "no module carried native armv6m code"


def test_unreachable_port_fails_cleanly_and_registers_no_key(ks, tmp_path, capsys):
    before = _snapshot(str(ks))
    rc = cli(["flash", "--board", "emulator", "--port", str(tmp_path / "no-such-tty"), "--data", str(ks)])
    cap = capsys.readouterr()
    assert rc == 2
    assert "cannot open" in cap.err and "no-such-tty" in cap.err
    assert _snapshot(str(ks)) == before  # the key is registered only once the files are on the board
    assert "no such port" in cap.err and "compiling" not in cap.out  # found before any compile


def test_port_that_cannot_be_opened_fails_cleanly_and_registers_no_key(ks, tmp_path, capsys):
    not_a_tty = tmp_path / "not-a-tty"
    not_a_tty.write_text("")
    before = _snapshot(str(ks))
    rc = cli(["flash", "--board", "emulator", "--port", str(not_a_tty), "--data", str(ks)])
    cap = capsys.readouterr()
    assert rc == 2
    assert "cannot open" in cap.err and "not-a-tty" in cap.err and "Traceback" not in cap.err
    assert _snapshot(str(ks)) == before  # the key is registered only once the files are on the board
    assert "device.key" in cap.out  # the plan was shown before the copy was tried


def test_board_definitions_a_board_imports_are_deployed_with_it():
    assert P.board_closure("pico_w") == ["pico_w", "pico"]  # boards/pico_w.py: from boards import pico
    mods = P.source_modules("pico_w")
    assert "boards/pico.py" in mods and "boards/pico_w.py" in mods and "boards/pizero.py" not in mods
    with pytest.raises(P.UserError, match="boards/nosuch.py is missing"):
        P.source_modules("nosuch")


@pytest.mark.parametrize("board", ["pico", "pico_w", "pizero", "emulator"])
def test_every_project_import_of_a_deployed_module_is_deployed(board):
    """Static import closure: an `import device.x` / `from shared import y` / `from boards
    import z` in a deployed module names a deployed module (else the board raises ImportError)."""
    import ast

    from becomingone.deploy.sources import for_arch
    mods = set(P.source_modules(board))
    march = P.TARGETS[board]["march"]

    def provided(dotted):
        base = dotted.replace(".", "/")
        return base + ".py" in mods or base + "/__init__.py" in mods

    def defined(dotted):
        base = dotted.replace(".", "/")
        path = base + ".py" if base + ".py" in mods else base + "/__init__.py"
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        out = {"*"}
        for node in ast.walk(tree):  # also names defined under try/if (viper fallbacks, ...)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Assign):
                out.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                out.update((a.asname or a.name).split(".")[0] for a in node.names)
        return out

    missing = []
    for rel in mods:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            tree = ast.parse(f.read(), rel)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [node.module + "." + a.name for a in node.names]
            for n in names:
                top = n.split(".")[0]
                if top not in ("device", "shared", "boards") or n in ("device", "shared", "boards"):
                    continue
                if provided(n):
                    continue
                mod = node.module if isinstance(node, ast.ImportFrom) else n
                if not for_arch(mod.replace(".", "/") + ".py", march):
                    continue  # an ARM-only module (Thumb assembly), imported only on rp2
                parent = n.rsplit(".", 1)[0]
                if (isinstance(node, ast.ImportFrom) and n != node.module and provided(parent)
                        and n.rsplit(".", 1)[1] in defined(parent)):
                    continue  # `from pkg.mod import name`: a name defined in a deployed module
                missing.append("%s imports %s" % (rel, n))
    assert not missing, missing


def test_root_main_passes_wifi_from_wifi_json(tmp_path, monkeypatch):
    src = P.root_main_source().decode()
    ns = {}
    exec(compile(src.rstrip()[:-len("_start()")], "main.py", "exec"), ns)
    monkeypatch.chdir(tmp_path)
    (tmp_path / P.WIFI_FILE).write_bytes(V.wifi_bytes({"ssid": "Lab", "password": "pa:ss-word", "_origin": "x"}))
    argv = ns["_argv"]({"board": "pico_w", "wifi_file": P.WIFI_FILE, "link": "udp://10.0.0.2:18790"})
    assert argv == ["--board", "pico_w", "--link", "udp://10.0.0.2:18790", "--wifi", "Lab:pa:ss-word"]
    # the firmware's own parser accepts it (the board splits SSID:PASSWORD at the first colon)
    P.check_device_flags({"board": "pico_w", "wifi_file": P.WIFI_FILE, "link": "udp://10.0.0.2:18790"},
                         {"ssid": "Lab", "password": "pa:ss-word"})


def test_keystore_is_the_one_the_host_uses(tmp_path, monkeypatch, capsys):
    from becomingone.commands.flash import keystore_path
    import argparse

    monkeypatch.chdir(tmp_path)
    a = argparse.Namespace(keystore=None, data=None, config=None)
    assert keystore_path(a) == str(tmp_path / "var" / "becomingone" / "keys.json")  # `run`'s default
    cfg = tmp_path / "becomingone.yaml"
    cfg.write_text("data_dir: %s\n" % (tmp_path / "d2"))
    a.config = str(cfg)
    assert keystore_path(a) == str(tmp_path / "d2" / "keys.json")
    a.data = str(tmp_path / "d3")
    assert keystore_path(a) == str(tmp_path / "d3" / "keys.json")
    a.keystore = "k.json"
    assert keystore_path(a) == str(tmp_path / "k.json")
    # with the defaults, `becomingone device keys list` sees the key flash registered
    rc = cli(["flash", "--board", "pizero", "--host-url", "udp://10.0.0.2:18790", "--device-id", "44"])
    out = capsys.readouterr().out
    assert rc == 0 and str(tmp_path / "var" / "becomingone" / "keys.json") in out
    fp = out.split("fingerprint ")[1][:8]
    assert cli(["device", "keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "44" in listing and fp in listing


def test_a_board_that_never_answers_ends_flash_with_the_reason_after_knocking(ks, tmp_path):
    # a board whose firmware turned Ctrl-C off, on a pty (the emulated Pico, a socat bridge):
    # mpremote read the pty without a timeout, so its deadlines never fired and flash waited for
    # good. With --wait 3 flash knocks (Ctrl-C, Ctrl-A) every 2 s and then says what to do.
    master, slave = pty.openpty()
    tty.setraw(slave)
    heard = bytearray()

    def board():                          # reads everything, answers nothing
        while True:
            try:
                d = os.read(master, 4096)
            except OSError:
                return
            if not d:
                return
            heard.extend(d)
    threading.Thread(target=board, daemon=True).start()
    before = _snapshot(str(ks))
    try:
        p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "emulator",
                            "--port", os.ttyname(slave), "--data", str(ks), "--wait", "3"],
                           capture_output=True, text=True, timeout=90)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "does not answer like a MicroPython board" in p.stderr and "--wait 30" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert heard.count(b"\r\x01") >= 2, bytes(heard)      # knocked again while it waited
    assert _snapshot(str(ks)) == before
