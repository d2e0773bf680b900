"""Device entry point (MicroPython and CPython, unmodified).

    micropython -X heapsize=192K device/main.py --board emulator --beats 2000 --link none
    python device/main.py --board emulator --beats 2000 --link none

Runs the beat loop and prints, last, one JSON line (stderr when the link uses stdout) with
beats, lateness_us {p50, p99, max}, decisions, collapses, heap_free, alloc_bytes_per_beat, ...
Flags (README "Device entry point"):
  --board NAME          emulator | pico | pico_w | pizero           (default: emulator)
  --beats N             beats to run, 0 = forever                   (default: 0)
  --link SPEC           none | serial | uart:ID[:BAUD] | udp://HOST:PORT | /dev/pts/N
                        (default: the board's: emulator none, pico serial, pico_w/pizero udp)
  --device-id N         1..65535                                    (default: 1)
  --boot-id N           1..65535 (default: random, new each boot)
  --key-file PATH       32-byte device key (raw, or 64 hex characters): frames are signed
  --seed N              emulator sensor seed                        (default: 42)
  --faults SPEC         emulator faults, e.g. noise@3000+2000*900,spike@1000*1500
  --fs HZ               sample rate f_s                             (default: 1000)
  --telemetry-every N   one TELEMETRY record per N beats (partials summed)   (default: 1)
  --batch N             TELEMETRY records per frame, 1..5           (default: 1)
  --pow-bits N          proof-of-work difficulty of WITNESS records (default: 16)
  --pulse-k K --pulse-p P   T_Lambda parameters (k*P must be > 1)   (default: 4, 5)
  --lag N               KAIROS lag in samples                       (default: 10)
  --omega W             KAIROS omega in rad/s                       (default: 2.0)
  --clock real|virtual  virtual: simulated time, as fast as possible (tests, CI)
  --wifi SSID:PASSWORD  pico_w: join this network first
  --quiet               no JSON report
"""
import sys


def _setup_path():
    """Make `device`, `shared`, `boards` importable whether run from the repo root, from
    device/ or from a board's filesystem root (/device, /shared)."""
    script = sys.argv[0] if sys.argv and sys.argv[0] else ""
    i = script.rfind("/")
    d = script[:i] if i >= 0 else "."
    j = d.rfind("/")
    root = d[:j] if j >= 0 else ("." if d not in (".", "") else "..")
    if d == "device" or d.endswith("/device"):
        root = d[:-6].rstrip("/") or ("/" if d.startswith("/") else ".")
    for p in (root, ""):
        if p not in sys.path:
            sys.path.insert(0, p)
    # the script's own directory (device/) must not shadow package imports
    for p in (d,):
        if p in sys.path and p not in (root, "", "."):
            sys.path.remove(p)


_setup_path()

def _precompiled():
    """True when the firmware's modules are .mpy files (a flashed board, the emulator's build)."""
    import os
    for p in sys.path:
        try:
            os.stat((p or ".") + "/device/beat.mpy")
            return True
        except OSError:
            pass
    return False


try:
    import gc
    # Keep one large hole in the heap for the long-lived tables: the unix port compiles every
    # source into the same 192K heap and leaves it fragmented into small free blocks. Loading
    # .mpy files makes no compiler garbage, and there the reserve only crowds the code out.
    _reserve = (bytearray(12 * 1024) if hasattr(gc, "mem_alloc") and not _precompiled()
                else None)
except MemoryError:
    _reserve = None

from device.cli import parse_args, UsageError  # noqa: E402


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    try:
        opts = parse_args(argv)
    except UsageError as e:
        sys.stderr.write("error: %s\n" % (e,))
        return 2
    global _reserve
    from device.runner import prepare, build, report_json
    try:
        try:
            prepare(opts)
        except MemoryError:          # the compiler needed the reserved block: give it back
            _reserve = None
            gc.collect()
            prepare(opts)
        _reserve = None
        gc.collect()
        beat = build(opts)
    except (ValueError, OSError) as e:
        sys.stderr.write("error: %s\n" % (e,))
        return 2
    try:
        beat.run(opts.beats)
    except KeyboardInterrupt:
        # the unix port raises Ctrl-C asynchronously: arriving inside a garbage collection it
        # leaves the heap locked, and the closing report could not allocate
        _unlock_heap()
    if not opts.quiet:
        out = sys.stderr if getattr(beat.link, "uses_stdout", False) else sys.stdout
        out.write(report_json(beat) + "\n")
    return 0


def _unlock_heap():
    try:
        from micropython import heap_unlock
    except ImportError:          # CPython
        return
    while heap_unlock():
        pass


if __name__ == "__main__":
    rc = main()
    if rc:
        sys.exit(rc)
