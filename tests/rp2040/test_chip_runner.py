"""The emulated Pico itself (host/rp2040): the real MicroPython RPI_PICO firmware boots on an
RP2040 at 125 MHz with the Pico's heap; time is the chip's; scripts report their exit status
and binary output; flash writes survive machine.reset(), the watchdog and a power cycle, and a
watchdog or machine.reset() keeps the watchdog scratch registers (a power cycle clears them);
ADC inputs reach the firmware; bad firmware files are refused with a message; another .uf2 can
be named (an official release)."""
import os
import shutil
import struct
import subprocess
import time

import pytest


def _code(src, **kw):
    from becomingone.rp2040.run import run_script
    return run_script({"t.py": src.encode()}, "t.py", **kw)


def test_micropython_on_an_rp2040_at_125_mhz_with_the_picos_heap(chip):
    r = _code("import sys, gc, machine, time\n"
              "print(sys.implementation._machine, sys.platform, machine.freq())\n"
              "gc.collect(); print('heap', gc.mem_free() + gc.mem_alloc())\n"
              "t = time.ticks_us(); time.sleep_ms(250); print('slept', time.ticks_diff(time.ticks_us(), t))\n")
    assert r.rc == 0, r.stderr
    out = r.text
    assert "Raspberry Pi Pico with RP2040 rp2 125000000" in out, out
    heap = int(out.split("heap ")[1].split()[0])
    assert 200 * 1024 < heap < 264 * 1024, heap
    slept = int(out.split("slept ")[1].split()[0])
    assert 249000 <= slept <= 251000, slept                # the chip's timer, not this machine's
    assert r.stats["script_emu_s"] >= 0.25 and r.stats["clk_sys_hz"] == 125000000


def test_exit_status_binary_stdout_and_traceback(chip):
    r = _code("import sys\nsys.stdout.buffer.write(bytes(range(256)))\nsys.exit(3)\n")
    assert r.rc == 3 and r.stdout == bytes(range(256)), (r.rc, r.stdout[:40])
    r = _code("print('before')\nraise ValueError('boom on the chip')\n")
    assert r.rc == 1 and "before" in r.text
    assert "ValueError: boom on the chip" in r.stderr and "Traceback" in r.stderr


def test_flash_survives_reset_watchdog_and_power_cycle_scratch_as_the_silicon(chip, tmp_path):
    from becomingone.rp2040.board import EmulatedPico
    main = (b"import machine, os\n"
            b"print('BOOT cause=%d scratch0=%x files=%s' % (machine.reset_cause(), "
            b"machine.mem32[0x4005800c], sorted(os.listdir('/'))))\n")
    pico = EmulatedPico(files={"main.py": main}, tap=True, log_path=str(tmp_path / "emu.log"))
    pico.start()
    try:
        at = pico.wait_for_output(b"BOOT cause=1 scratch0=0", timeout=60)   # power-on
        pico.write(b"\r\n")
        at = pico.wait_for_output(b">>> ", timeout=30, since=at)
        pico.write(b"f = open('kept.txt', 'w'); f.write('written on the chip'); f.close()\r\n")
        at = pico.wait_for_output(b">>> ", timeout=30, since=at)
        pico.write(b"import machine; machine.mem32[0x4005800c] = 0x1234; machine.reset()\r\n")
        at = pico.wait_for_output(b"BOOT cause=3 scratch0=1234 files=['kept.txt', 'main.py']",
                                  timeout=60, since=at)
        assert pico.resets == 1 and "reason=force" in pico.events[-1]
        pico.write(b"\r\n")
        at = pico.wait_for_output(b">>> ", timeout=30, since=at)
        pico.write(b"import machine; w = machine.WDT(timeout=300)\r\n")    # never fed
        at = pico.wait_for_output(b"BOOT cause=3 scratch0=1234", timeout=60, since=at)
        assert pico.watchdog_resets == 1 and "reason=watchdog" in pico.events[-1]
        pico.power_cycle()
        pico.wait_for_output(b"BOOT cause=1 scratch0=0 files=['kept.txt', 'main.py']", timeout=60,
                             since=at)
        assert "reason=power" in pico.events[-1]
    finally:
        st = pico.stop()
    files = pico.files_now()
    pico.close()
    assert files["kept.txt"] == b"written on the chip"
    assert st["flash_program_bytes"] > 0, st              # written through the bootrom's routines


def test_adc_inputs_reach_the_firmware(chip):
    from becomingone.rp2040.chip import adc_spec
    r = _code("import machine\n"
              "a0 = machine.ADC(26).read_u16() >> 4\n"
              "a1 = machine.ADC(27).read_u16() >> 4\n"
              "print('adc', a0, a1)\n", adc=[adc_spec(0, mid=1000), adc_spec(1, mid=3000, noise=0)])
    assert r.rc == 0, r.stderr
    a0, a1 = map(int, r.text.split("adc ")[1].split()[:2])
    assert abs(a0 - 1000) <= 1 and abs(a1 - 3000) <= 1, (a0, a1)


def test_bad_firmware_files_are_refused_with_a_message(chip, tmp_path):
    from becomingone.rp2040 import chip as C
    from becomingone.rp2040.errors import UserError
    bad = tmp_path / "notes.uf2"
    bad.write_bytes(b"hello")
    with pytest.raises(UserError, match="not a UF2 file"):
        C.firmware(str(bad))
    with pytest.raises(UserError, match="does not exist"):
        C.firmware(str(tmp_path / "missing.uf2"))
    # an RP2350 (Pico 2) image: the emulator is an RP2040
    blk = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1,
                      0xE48BFF59) + bytes(476) + struct.pack("<I", 0x0AB16F30)
    rp2350 = tmp_path / "RPI_PICO2.uf2"
    rp2350.write_bytes(blk)
    fw = C.firmware(str(rp2350))
    p = subprocess.run(C.runner_argv(fw, mode=["--code", "print(1)"], stats=False),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == C.EXIT_EMULATOR and "RP2350" in p.stderr, p.stderr
    # the fixture is what its provenance says (not, e.g., a Git LFS pointer)
    fx = C.firmware(C.FIXTURE)
    assert fx.fixture and fx.sha256 == C.FIXTURE_SHA256


def test_another_uf2_named_by_the_environment_boots(chip, tmp_path, monkeypatch):
    """The way to run an official MicroPython release: BECOMINGONE_RP2040_FIRMWARE names it
    (here a copy of the fixture under another name: the lane runs offline)."""
    from becomingone.rp2040 import chip as C
    other = tmp_path / "RPI_PICO-release.uf2"
    shutil.copy(C.FIXTURE, other)
    monkeypatch.setenv(C.ENV_FIRMWARE, str(other))
    fw = C.firmware()
    assert fw.path == str(other) and not fw.fixture and "named by you" in fw.describe()
    t0 = time.monotonic()
    r = _code("import os; print(os.uname().release)")
    assert r.rc == 0 and "1.28.0" in r.text, (r.text, r.stderr)
    assert time.monotonic() - t0 < 120
    assert os.path.exists(other)


def test_profile_symbols_of_the_fixture_attribute_program_counters():
    """python -m becomingone.rp2040 profile names the firmware function a sampled PC falls in."""
    from becomingone.rp2040 import profile
    syms = profile.load_syms()
    assert len(syms) > 2000
    by = {n: a for a, _s, n in syms}
    vm, gc_info = by["mp_execute_bytecode"], by["gc_info"]
    got = dict(profile.attribute([(vm + 6, 10), (gc_info + 2, 5), (0x100, 1),
                                  (0x20030000, 2)], syms))
    assert got["mp_execute_bytecode"] == 10 and got["gc_info"] == 5 and got["bootrom"] == 1
    assert got["ram: native code (.mpy @native/@viper)"] == 2
    assert profile.group_of("gc_info").startswith("GC")
