"""python -m becomingone.rp2040 COMMAND ...: the emulated Raspberry Pi Pico from the command line.

    run      run a script on the chip with the firmware on its filesystem (exit status = the script's)
    board    boot a board and keep it running; its USB serial port is a pty (mpremote, flash, the host)
    measure  step() time, heap and proof-of-work rate of the beat on the chip (the lane's figures)
    profile  where the chip's cycles go during a measured beat run, by firmware (C) function
    sections where step() spends its time, by the beat's Python methods
    syms     write the function symbol table of a firmware ELF (for profile --syms)

Every command boots firmware/RPI_PICO.uf2 unless --firmware FILE or BECOMINGONE_RP2040_FIRMWARE
names another RPI_PICO .uf2 (an official MicroPython release, say). docs/DEVICE.md "On the chip".
"""
import argparse
import json
import os
import sys
import time

from becomingone.rp2040.errors import UserError


def _add_fw(p):
    p.add_argument("--firmware", metavar="UF2", help="RPI_PICO .uf2 to boot (default: "
                   "$BECOMINGONE_RP2040_FIRMWARE, else host/rp2040/firmware/RPI_PICO.uf2)")


def _add_beat(p):
    p.add_argument("--board", default="pico", choices=("pico", "emulator"),
                   help="board definition on the chip: pico (ADC0 fed by the emulator with a "
                   "5 Hz sine plus noise; the shipped sampler, PWM and watchdog) or emulator "
                   "(the synthetic sensor computed on the chip). Default pico")
    p.add_argument("--beats", type=int, default=300, help="beats to measure (default 300)")
    p.add_argument("--no-key", action="store_true", help="no device key (frames unsigned)")
    p.add_argument("--device-arg", action="append", default=[], metavar="FLAG=VALUE",
                   help="extra device/main.py flag, e.g. --device-arg pow-bits=12 (repeatable)")
    p.add_argument("--no-beat-mem-checks", action="store_true",
                   help="diagnostic: switch off device/beat.py's own per-beat gc.mem_alloc()/"
                   "gc.mem_free() bookkeeping (about 9 ms per call on the RP2040)")


def _device_args(items):
    out = []
    for it in items:
        k, sep, v = it.partition("=")
        if not k or k.startswith("-"):
            raise UserError("--device-arg %r: expected FLAG=VALUE without dashes (pow-bits=12)" % it)
        out += ["--" + k] + ([v] if sep else [])
    return out


def cmd_run(a):
    from becomingone.rp2040 import build, run
    files = build.firmware_modules(("pico", "emulator"))
    name = os.path.basename(a.script)
    with open(a.script, "rb") as f:
        files[name] = f.read()
    res = run.run_script(files, name, a.args, firmware=a.firmware, wall_timeout=a.wall_timeout)
    sys.stdout.buffer.write(res.stdout.replace(b"\r\n", b"\n"))
    sys.stdout.flush()
    sys.stderr.write(res.stderr)
    return res.rc


def cmd_board(a):
    from becomingone.rp2040 import build
    from becomingone.rp2040.board import EmulatedPico
    from becomingone.rp2040.chip import adc_spec
    files = None
    if a.firmware_files:
        files = build.firmware_modules(("pico", "emulator"))
    pico = EmulatedPico(files=files, firmware=a.firmware, log_path=a.log,
                        adc=[adc_spec(0, mid=2048, hz=5, amp=400, noise=24)])
    import signal

    def _term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    pico.start()
    if a.link:
        if os.path.lexists(a.link):
            if not os.path.islink(a.link):
                raise UserError("--link %s exists and is not a symlink: choose another path" % a.link)
            os.unlink(a.link)
        os.symlink(pico.port, a.link)
    print("emulated Pico (%s) on %s%s; Ctrl-C stops it" % (
        pico.fw.describe(), pico.port, (" (symlink %s)" % a.link) if a.link else ""), flush=True)
    try:
        while pico.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        st = pico.stop()
        if a.link and os.path.islink(a.link):
            os.unlink(a.link)
        print("stopped after %s emulated s; %d reset(s)" % (st.get("total_emu_s"), pico.resets))
        pico.close()
    return 0


def cmd_measure(a):
    from becomingone.rp2040 import measure
    r = measure.measure(board=a.board, beats=a.beats, key=not a.no_key, firmware=a.firmware,
                        device_args=_device_args(a.device_arg),
                        beat_mem_checks=not a.no_beat_mem_checks, realtime=a.realtime)
    if a.json:
        print(json.dumps(r, indent=1, sort_keys=True))
    else:
        for line in measure.describe(r):
            print(line)
    return 0


def cmd_sections(a):
    from becomingone.rp2040 import measure
    r = measure.sections(board=a.board, beats=a.beats, key=not a.no_key, firmware=a.firmware,
                         device_args=_device_args(a.device_arg),
                         beat_mem_checks=not a.no_beat_mem_checks)
    if a.json:
        print(json.dumps(r, indent=1, sort_keys=True))
    else:
        for line in measure.describe_sections(r):
            print(line)
    return 0


def cmd_profile(a):
    from becomingone.rp2040 import profile
    r = profile.profile(board=a.board, beats=a.beats, key=not a.no_key, firmware=a.firmware,
                        syms=a.syms, device_args=_device_args(a.device_arg),
                        beat_mem_checks=not a.no_beat_mem_checks)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        for line in profile.describe(r, top=a.top):
            print(line)
    return 0


def cmd_syms(a):
    from becomingone.rp2040 import profile
    n = profile.write_syms(a.elf, a.out)
    print("%d function symbols -> %s" % (n, a.out))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m becomingone.rp2040", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run a script on the chip (the firmware is on its filesystem)")
    _add_fw(p)
    p.add_argument("--wall-timeout", type=float, default=900)
    p.add_argument("script", help="a MicroPython script on this machine")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("board", help="boot a board and keep it running on a pty")
    _add_fw(p)
    p.add_argument("--firmware-files", action="store_true",
                   help="put the project's firmware (.mpy) on its filesystem (default: a blank "
                   "board, as after copying the .uf2: flash it with `becomingone flash`)")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    p.add_argument("--log", metavar="FILE", help="append the emulator's messages to FILE")
    p.set_defaults(fn=cmd_board)
    for name, fn, hlp in (("measure", cmd_measure, "the beat's figures on the chip"),
                          ("sections", cmd_sections, "step() time by the beat's methods"),
                          ("profile", cmd_profile, "cycles by firmware function")):
        p = sub.add_parser(name, help=hlp)
        _add_fw(p)
        _add_beat(p)
        p.add_argument("--json", action="store_true", help="one JSON object")
        if name == "measure":
            p.add_argument("--realtime", type=int, default=0, metavar="N",
                           help="also run N beats as on a board (idle() + step(), nothing timed "
                           "in between) and report the beat's lateness p50/p99/max and skipped "
                           "beats over them (the real-time budget: p99 < 10 %% of the period, "
                           "none skipped, over 2,000 beats)")
        if name == "profile":
            p.add_argument("--syms", help="symbol table (default: the fixture's RPI_PICO.syms; an "
                           "ELF works too)")
            p.add_argument("--top", type=int, default=30)
        p.set_defaults(fn=fn)
    p = sub.add_parser("syms", help="function symbols of a firmware ELF")
    p.add_argument("elf")
    p.add_argument("out")
    p.set_defaults(fn=cmd_syms)
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except UserError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
