"""Flashing the emulated Pico with the real tools: `becomingone flash --board pico` (tools/flash.py)
drives the real mpremote over the emulated board's USB CDC port (a pty). A blank board (the
MicroPython RPI_PICO firmware only, as after copying the .uf2) gets the firmware compiled for
armv6m, its board config and a fresh device key on its littlefs; flash resets it
(machine.reset(): the emulated chip resets and keeps its flash), the board boots main.py into the
beat on the serial link, and the host coordinator on the same port accepts its signed HELLO and
TELEMETRY. Then the documented re-flash of a running serial board: a replug (power cycle) and
flash --wait connecting within main.py's boot grace period.

The emulated RP2040 has its own littlefs image, so mpremote's file commands are safe here (unlike
a MicroPython unix-port "board", which sees this machine's filesystem)."""
import json
import os
import subprocess
import sys
import threading
import time

from tests.rp2040.conftest import ROOT

DEVICE_ID = 12


def _wait(cond, timeout, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _flash(port, data, *extra, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "pico",
                           "--port", port, "--data", str(data), "--device-id", str(DEVICE_ID)]
                          + list(extra), capture_output=True, timeout=timeout)


def test_flash_a_blank_emulated_pico_then_it_beats_for_the_coordinator(chip, tmp_path):
    from becomingone.config import load_config
    from becomingone.coordinator.service import Coordinator
    from becomingone.ingest.keystore import Keystore
    from becomingone.deploy import plan as P
    from becomingone.rp2040 import build
    from becomingone.rp2040.board import EmulatedPico
    from becomingone.rp2040.measure import PICO_ADC

    data = tmp_path / "hostdata"
    pico = EmulatedPico(adc=[PICO_ADC], log_path=str(tmp_path / "emulator.log"), tap=True)
    pico.start()
    try:
        pico.write(b"\r\n")
        pico.wait_for_output(b">>> ", timeout=60)       # a blank board at its REPL
        t0 = time.monotonic()
        p = _flash(pico.port, data, "--set", "pow_bits=8", "--set", "boot_grace_ms=500")
        out = p.stdout + p.stderr
        assert p.returncode == 0, out.decode(errors="replace")
        flash_s = time.monotonic() - t0
        assert b"deployed" in out and b"board reset" in out
        key = Keystore(str(data / "keys.json")).get(DEVICE_ID)
        assert key is not None and len(key) == 32
        assert key not in out and key.hex().encode() not in out
        assert _wait(lambda: pico.resets >= 1, 30), pico.events   # machine.reset() on the chip

        # the board boots main.py -> device/main.py --board pico --link serial: the coordinator
        # on the board's port gets its signed HELLO and TELEMETRY
        # the host requires the board's difficulty (a WITNESS mined early is not refused)
        cfg = load_config(overrides={"data_dir": str(data), "ledger.pulse_summary_every": 0,
                                     "admission.pow_bits": 8})
        c = Coordinator(cfg, links=[pico.port]).start()
        th = threading.Thread(target=c.run, daemon=True)
        th.start()
        try:
            def beating():
                s = c.sessions.get(DEVICE_ID)
                return s is not None and s.hello is not None and s.by_type.get(2, 0) >= 20
            ok = _wait(beating, 240, 0.5)
            s = c.sessions.get(DEVICE_ID)
            assert ok, ("no HELLO + 20 TELEMETRY from the flashed board", c.counters,
                        s and dict(s.by_type), pico.events[-5:])
            hello = s.hello
            board = hello["board"] if isinstance(hello, dict) else hello.fields["board"]
            board = board.decode() if isinstance(board, bytes) else board
            assert board.rstrip("\0") == "pico"
            rej = c.status()["frames_rejected"]
            assert c.counters["frames_accepted"] >= 21 and not rej, (rej, dict(c.counters))
        finally:
            c.stop()
            th.join(timeout=30)
        print("flash %.1f s; HELLO and 20 beats %.1f s after flash started" % (
            flash_s, time.monotonic() - t0))

        # the replug re-flash of a running serial board (Ctrl-C is off in the firmware): flash
        # --wait knocks, the board is power-cycled while it does, and flash gets in within
        # main.py's boot grace period (the pty stays: the port never "appears")
        p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--board", "pico",
                              "--port", pico.port, "--data", str(data), "--device-id", str(DEVICE_ID),
                              "--keep-key", "--wait", "120", "--set", "pow_bits=8",
                              "--set", "boot_grace_ms=3000", "--no-reset"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            said = b""
            while b"copying" not in said:            # built and about to connect
                line = p.stdout.readline()
                assert line, p.stderr.read().decode(errors="replace")
                said += line
            time.sleep(3)                            # knocking at the running firmware
            pico.power_cycle()
            out, err = p.communicate(timeout=600)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, (said + out + err).decode(errors="replace")
        assert b"deployed" in out, out
    finally:
        pico.stop()

    # what is on the board's flash: the armv6m build byte for byte, config, key, main.py
    files = pico.files_now()
    pico.close()
    assert files["device.key"] == key
    cfg_on_board = json.loads(files["boardcfg.json"])
    assert cfg_on_board["board"] == "pico" and cfg_on_board["link"] == "serial"
    assert cfg_on_board["device_id"] == DEVICE_ID and cfg_on_board["boot_grace_ms"] == 3000
    assert files["main.py"] == P.root_main_source()
    want = build.compile_sources(P.source_modules("pico"))
    for name, blob in want.items():
        assert files.get(name) == blob, name
    assert not [f for f in files if f.endswith(".py") and f != "main.py"]
