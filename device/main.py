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
  --fs HZ               sample rate f_s            (default: the board's, boards/*.py LIMITS)
  --telemetry-every N   one TELEMETRY record per N beats (partials summed)   (default: 1)
  --batch N             TELEMETRY records per frame, 1..5     (default: the board's; 1, pico 5)
  --pow-bits N          proof-of-work difficulty of WITNESS records (default: 12)
  --pulse-k K --pulse-p P   T_Lambda parameters (k*P must be > 1)   (default: 4, 5)
  --lag N               KAIROS lag in KAIROS samples (f_s / M, about 250 Hz); 0 = learn one
                        period of the machine                       (default: 0)
  --omega W             KAIROS omega in rad/s                       (default: 0)
  --sensor-file PATH    emulator: play a recorded signal (raw little-endian u16 ADC counts)
  --model shipped|seed  the arbiter's threat model                  (default: shipped)
  --clock real|virtual  virtual: simulated time, as fast as possible (tests, CI)
  --wifi SSID:PASSWORD  pico_w: join this network first
  --state-dir DIR       where QUARANTINE persists across resets (pico: /, pizero:
                        $STATE_DIRECTORY or ., emulator: none unless given)
  --act-start F         the actuator PID's starting output, 0..1 of full duty (0)
  --quiet               no JSON report
Exit status: 0, 2 (bad flags or board limits), 3 (an exception escaped the beat: the outputs went
to their safe value, an ERROR frame was sent; a supervisor restarts the firmware, which then
reports reset cause CRASH and starts in QUARANTINE).
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
    # root first: run from another tree's root (a repo checkout), the cwd's sources must not
    # shadow the firmware's modules (.py compiled on the board's heap instead of its .mpy)
    for p in ("", root):
        if p in sys.path:
            sys.path.remove(p)
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


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    from device.cli import parse_args, check_board, UsageError
    try:
        opts = parse_args(argv)
        check_board(opts)              # f_s and the beat period within the board's limits
    except UsageError as e:
        sys.stderr.write("error: %s\n" % (e,))
        return 2
    global _reserve
    from device.runner import prepare, build, unload
    parse_args = check_board = UsageError = None   # the option parser leaves the heap before
    unload("device.cli")                           # the long-lived tables are allocated
    try:
        for attempt in range(3):
            try:
                prepare(opts)
                break
            except MemoryError:      # the compiler needed the reserved block: give it back;
                _reserve = None      # each attempt keeps the modules compiled so far
                gc.collect()
                if attempt == 2:
                    raise
        _reserve = None
        gc.collect()
        beat = build(opts)
    except (ValueError, OSError) as e:
        sys.stderr.write("error: %s\n" % (e,))
        return 2
    # boot-only code leaves the heap: the option parser and the builder (~15 KB of a Pico's)
    beats = opts.beats
    quiet = opts.quiet
    opts = prepare = build = None
    unload("device.runner")
    unload("device.limits")          # check_board's and the rp2 DMA sampler's pacing rule
    unload = None
    gc.collect()
    rc = 0
    try:
        rc = beat.run(beats)           # an exception in the beat: outputs safe, ERROR, reset
    except KeyboardInterrupt:
        # the unix port raises Ctrl-C asynchronously: arriving inside a garbage collection it
        # leaves the heap locked, and the closing report could not allocate
        _unlock_heap()
    if not rc and beat.latch is not None:
        beat.latch.disarm()            # a clean exit: the next watchdog reset is not a hang
    fl = getattr(beat.link, "flush", None)
    if fl is not None:
        fl(200000)
    if not quiet:
        out = sys.stderr if getattr(beat.link, "uses_stdout", False) else sys.stdout
        gc.collect()
        from device.report import write_report
        write_report(beat, out)
    return rc


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
