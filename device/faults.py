"""What the device does when an exception escapes the beat (``Beat.run``), in this order:

1. outputs to their safe value: PWM to ``output_safe``, LED on (first, allocation-free, each
   step guarded: the hardware may be what failed);
2. the latch: the next boot reports reset cause CRASH and starts in QUARANTINE
   (device/latch.py), so a board that crashes while its output matters comes back safe;
3. report: an ERROR frame (code INTERNAL, ref = the beat, text = the exception's type and message,
   16 characters), pushed out through the link (a buffered serial link is drained, with a
   deadline); the traceback on the console (not on a serial link that carries frames) and in
   ``crash.txt`` in the board's folder when it has one;
4. reset through the watchdog: on rp2 the watchdog is re-armed with a 1 ms timeout and not fed
   (``machine.reset()`` if it has not fired within 100 ms); on the unix port / CPython
   (``SoftWatchdog``) the process ends with status 3 (``EXIT_CRASH``) and its supervisor (systemd
   ``Restart=always``, the emulation runner, a test) starts it again.

Before this existed an uncaught ValueError from a CONFIG left the PWM at its last duty until the
hardware watchdog fired 8.4 s later, and the host's resend then crashed the next boot the same way.
"""
import sys

from shared import protocol_codes as P

EXIT_CRASH = 3


def _text(e):
    name = type(e).__name__
    msg = ""
    try:
        msg = str(e)
    except Exception:
        pass
    t = name + (": " + msg if msg else "")
    b = bytearray(16)
    n = 0
    for ch in t:
        if n >= 16:
            break
        c = ord(ch)
        b[n] = c if 0x20 <= c <= 0x7E else 0x3F
        n += 1
    return bytes(b[:n])


def on_crash(beat, e):
    """Handle an exception that escaped the beat; returns EXIT_CRASH where the runtime cannot
    reset itself (unix port, CPython), never returns on a board with a hardware watchdog."""
    hw = beat.hw
    try:
        hw.pwm.safe()
    except Exception:
        pass
    try:
        hw.led.set(1)
    except Exception:
        pass
    beat.quarantined = True
    latch = getattr(beat, "latch", None)
    if latch is not None:
        try:
            latch.crash()
        except Exception:
            pass
    beat.crashed = _text(e)
    try:
        tm = beat.time
        beat.link.send(beat.enc.error(tm.era, tm.off, P.ERR_INTERNAL, 0, beat.beat & 0x3FFFFFFF,
                                      beat.crashed))
        fl = getattr(beat.link, "flush", None)
        if fl is not None:
            fl(200000)
    except Exception:
        pass
    _log(beat, e)
    wd = hw.watchdog
    reset = getattr(wd, "reset_now", None)
    if reset is not None:
        reset()               # does not return on a board
    return EXIT_CRASH


def _log(beat, e):
    quiet = getattr(beat.link, "uses_stdout", False) and sys.implementation.name == "micropython" \
        and sys.platform == "rp2"
    if not quiet:
        try:
            sys.stderr.write("becomingone: exception in the beat (beat %d): outputs safe, "
                             "resetting through the watchdog\n" % beat.beat)
            _print_exc(e, sys.stderr)
        except Exception:
            pass
    d = getattr(beat.latch, "dir", None) if getattr(beat, "latch", None) is not None else None
    if d:
        try:
            with open(d.rstrip("/") + "/crash.txt", "w") as f:
                f.write("beat %d\n" % beat.beat)
                _print_exc(e, f)
        except Exception:
            pass


def _print_exc(e, f):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e, f)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__, file=f)
