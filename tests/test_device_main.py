"""device/main.py, the entry point, run as a script from the repo root on both runtimes."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
KEYS = ("beats", "lateness_us", "decisions", "collapses", "heap_free", "alloc_bytes_per_beat")


def _run(cmd, **kw):
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120, **kw)
    return p


def _report(stdout):
    line = stdout.decode().strip().splitlines()[-1]
    return json.loads(line)


@pytest.mark.skipif(not os.path.exists(MPY), reason="MicroPython unix port not installed")
def test_micropython_entry_point_prints_report_last(firmware_main):
    # the firmware as a board runs it (.mpy) at a Pico's heap
    p = _run([MPY, "-X", "heapsize=192K", firmware_main, "--board", "emulator", "--beats",
              "300", "--link", "none"])
    assert p.returncode == 0, p.stderr.decode()[-800:]
    r = _report(p.stdout)
    for k in KEYS:
        assert k in r, k
    assert r["beats"] == 300 and sum(r["decisions"].values()) == 300
    assert set(r["lateness_us"]) >= {"p50", "p99", "max"}
    assert r["alloc_bytes_per_beat"] == 0
    assert r["heap_free"] > 0


@pytest.mark.skipif(not os.path.exists(MPY), reason="MicroPython unix port not installed")
def test_micropython_entry_point_from_sources():
    """From the sources the unix port compiles every module into the same heap, interning every
    identifier (locals too) and building each module's parse tree: that needs more than a
    board running .mpy files (README, "Device entry point")."""
    p = _run([MPY, "-X", "heapsize=256K", "device/main.py", "--board", "emulator", "--beats",
              "100", "--link", "none"])
    assert p.returncode == 0, p.stdout.decode()[-800:] + p.stderr.decode()[-800:]
    assert _report(p.stdout)["beats"] == 100


def test_cpython_entry_point_virtual_clock():
    p = _run([sys.executable, "device/main.py", "--board", "emulator", "--beats", "500",
              "--link", "none", "--clock", "virtual", "--faults", "impact@600+1500*420"])
    assert p.returncode == 0, p.stderr.decode()[-800:]
    r = _report(p.stdout)
    assert r["beats"] == 500 and r["alloc_bytes_per_beat"] is None
    assert r["lateness_us"]["max"] == 0              # virtual time: never late
    # a bearing fault's impacts from 0.6 s: the feature model's threat passes ALERT
    assert r["decisions"]["ALERT"] > 0 and r["decisions"]["NOOP"] > 100


def test_bad_flags_are_rejected_with_a_clear_message():
    for args, msg in ((["--board", "esp32"], "allowed"), (["--pulse-k", "0.1"], "k"),
                      (["--beats", "x"], "integer"), (["--link", "carrier-pigeon"], "none"),
                      (["--bogus", "1"], "unknown option")):
        p = _run([sys.executable, "device/main.py", "--clock", "virtual"] + args)
        assert p.returncode == 2, args
        assert msg in p.stderr.decode(), (args, p.stderr)


def test_serial_link_on_stdin_stdout_answers_time_sync():
    """--link serial: COBS frames on stdin/stdout, the JSON report on stderr."""
    from shared import cobs
    from shared import protocol as P
    req = P.encode(P.TIME_SYNC, {"mode": 0, "host_t1_us": 42, "rx_era": 0, "rx_off": 0},
                   0, 4242, 0)
    p = _run([sys.executable, "device/main.py", "--beats", "60", "--link", "serial",
              "--clock", "virtual", "--boot-id", "4242"], input=cobs.encode(req))
    assert p.returncode == 0, p.stderr.decode()[-800:]
    frames = [P.decode(cobs.decode(seg)) for seg in p.stdout.split(b"\x00") if seg]
    types = [f.type for f in frames]
    assert types[0] == P.HELLO and types.count(P.TELEMETRY) == 60
    sync = [f for f in frames if f.type == P.TIME_SYNC]
    assert sync and sync[0].fields["host_t1_us"] == 42 and sync[0].fields["mode"] == P.SYNC_REPLY
    assert json.loads(p.stderr.decode().strip().splitlines()[-1])["beats"] == 60


def test_keyed_device_never_loads_the_host_protocol_module(tmp_path):
    """A keyed device (session handshake pending, HELLOs tagged with the device key) runs on
    shared/wire_format.py + wire_check.py; shared/protocol.py (the host's catalogue) stays
    unloaded: on a Pico every loaded module is heap."""
    key = tmp_path / "dev.key"
    key.write_bytes(bytes(range(32)))
    code = ("import sys, runpy, atexit\n"
            "atexit.register(lambda: sys.stderr.write('MODS %s %s\\n' % ("
            "'shared.protocol' in sys.modules, 'device.session' in sys.modules)))\n"
            "sys.argv = ['device/main.py', '--board', 'emulator', '--beats', '200', '--link',"
            " 'none', '--clock', 'virtual', '--key-file', KEY]\n"
            "sys.path.insert(0, '.')\n"
            "runpy.run_path('device/main.py', run_name='__main__')\n").replace("KEY", repr(str(key)))
    p = _run([sys.executable, "-c", code])
    assert p.returncode == 0, p.stderr.decode()[-800:]
    assert "MODS False True" in p.stderr.decode(), p.stderr.decode()[-800:]
