"""QUARANTINE that survives a reset, and why the board (re)started (HELLO reset_cause).

The latch is kept in two places, each optional:
- **rp2 watchdog scratch registers** (``machine.mem32``): scratch 0 says "the beat is running
  with the watchdog armed", scratch 1 "QUARANTINE latched", scratch 2 the cause the next boot
  must report (CRASH).  They survive a watchdog reset and ``machine.reset()`` (which the rp2 port
  also does through the watchdog), not a power loss.  Writing one is a single store, so the beat
  sets the latch in the very beat that enters QUARANTINE.  (Scratch 4-7 belong to the pico-sdk.)
- **a small file** in the board's folder (``state_dir``: ``/`` on a Pico's flash, the service's
  state directory on a Pi Zero, ``--state-dir`` on the emulator): ``latch`` exists while
  QUARANTINE is latched (survives a power loss or a brown-out), ``reset-cause`` holds the cause
  the next boot reports (``crash`` from the crash handler, ``watchdog`` from systemd's
  ``ExecStopPost`` when its watchdog killed the service); it is read and removed at boot.  The file
  is written in idle time after the beat that latched (a flash write stalls an RP2040 for
  milliseconds; the output is already at its safe value by then).

At boot (``boot()``) the device starts **latched** when either store says so, or when the last
reset was a watchdog reset (the beat stopped feeding it) or a crash: a board that hung or
crashed in the middle of a fault comes back with its output safe until the host's CLEAR.

Reset cause on rp2: ``machine.reset_cause()`` says WDT_RESET both for a watchdog timeout and for
``machine.reset()`` (mpremote's reset after a flash); the armed marker tells them apart (set
when the beat starts feeding, cleared on a clean exit).  Elsewhere: the ``reset-cause`` file,
else unknown.
"""
from shared.protocol_codes import (RESET_UNKNOWN, RESET_POWER_ON, RESET_WATCHDOG, RESET_CRASH,
                                   RESET_SOFT)

CAUSE_NAMES = ("unknown", "power_on", "watchdog", "crash", "soft")   # HELLO reset_cause 0..4

_SCR0 = 0x4005800C    # WATCHDOG_BASE + SCRATCH0: armed marker
_SCR1 = 0x40058010    # SCRATCH1: latch marker
_SCR2 = 0x40058014    # SCRATCH2: cause for the next boot
_ARMED = 0x2BEC0A11   # markers < 2^30: small ints on a Pico, no allocation to store
_LATCH = 0x2BEC0A12
_CAUSE = 0x2BEC0A00   # | cause (low byte)

LATCH_FILE = "latch"
CAUSE_FILE = "reset-cause"


def _join(d, name):
    if not d:
        return None
    return d + name if d.endswith("/") else d + "/" + name


class Latch:
    def __init__(self, state_dir=None, machine=None):
        self.dir = state_dir or None
        self.m = machine if machine is not None and hasattr(machine, "mem32") else None
        self.cause = RESET_UNKNOWN
        self.latched = False
        self.restored = False
        self.armed = False
        self._dirty = False
        self.writes = 0
        self.errors = 0
        self.last_error = ""

    # ------------------------------------------------------------------ boot
    def boot(self):
        """Read both stores once; returns True when the device must start latched."""
        cause = RESET_UNKNOWN
        latched = False
        m = self.m
        if m is not None:
            mem = m.mem32
            v = mem[_SCR2]
            pending = v & 0xFF if (v & ~0xFF) == _CAUSE else 0
            latched = mem[_SCR1] == _LATCH
            armed = mem[_SCR0] == _ARMED
            wdt = m.reset_cause() == getattr(m, "WDT_RESET", 3)
            if 0 < pending <= RESET_SOFT:
                cause = pending
            elif wdt:
                cause = RESET_WATCHDOG if armed else RESET_SOFT
            else:
                cause = RESET_POWER_ON
            mem[_SCR2] = 0
            mem[_SCR0] = 0
        path = _join(self.dir, LATCH_FILE)
        if path is not None:
            if _exists(path):
                latched = True
            cpath = _join(self.dir, CAUSE_FILE)
            word = _read_word(cpath)
            if word:
                for i in range(len(CAUSE_NAMES)):
                    if CAUSE_NAMES[i] == word:
                        cause = i
                _remove(cpath)
        if cause in (RESET_WATCHDOG, RESET_CRASH):
            latched = True
        self.cause = cause
        self.restored = latched
        self.latched = False
        if latched:
            self.set()
            self.service()
        return latched

    # ------------------------------------------------------------------ run time
    def arm(self):
        """The beat feeds a running watchdog from now on: a watchdog reset means it hung."""
        self.armed = True
        if self.m is not None:
            self.m.mem32[_SCR0] = _ARMED

    def disarm(self):
        """A clean exit (beats done, Ctrl-C): the next watchdog reset is not a hang."""
        self.armed = False
        if self.m is not None:
            self.m.mem32[_SCR0] = 0

    def set(self):
        """QUARANTINE entered (from the beat: one store, no allocation; the file in idle)."""
        if not self.latched:
            self.latched = True
            self._dirty = self.dir is not None
            if self.m is not None:
                self.m.mem32[_SCR1] = _LATCH

    def clear(self):
        """The host's CLEAR."""
        if self.latched:
            self.latched = False
            self._dirty = self.dir is not None
            if self.m is not None:
                self.m.mem32[_SCR1] = 0

    def service(self):
        """Idle time: bring the file in line with the latch (one flash write per change)."""
        if not self._dirty:
            return False
        self._dirty = False
        path = _join(self.dir, LATCH_FILE)
        try:
            if self.latched:
                _write(path, "latched\n")
            else:
                _remove(path)
            self.writes += 1
        except OSError as e:
            self.errors += 1
            self.last_error = str(e)
        return True

    def crash(self):
        """An exception escaped the beat: the next boot reports CRASH and starts latched.
        Written at once (the board resets right after)."""
        if self.m is not None:
            self.m.mem32[_SCR2] = _CAUSE | RESET_CRASH
        self.set()
        self.service()
        cpath = _join(self.dir, CAUSE_FILE)
        if cpath is not None:
            try:
                _write(cpath, CAUSE_NAMES[RESET_CRASH] + "\n")
            except OSError as e:
                self.errors += 1
                self.last_error = str(e)

    def report(self):
        return {"reset_cause": CAUSE_NAMES[self.cause], "restored": self.restored,
                "latched": self.latched, "file_writes": self.writes, "errors": self.errors}


def _exists(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read_word(path):
    if path is None:
        return ""
    try:
        with open(path) as f:
            return f.read(32).strip()
    except OSError:
        return ""


def _remove(path):
    import os
    try:
        os.remove(path)
    except OSError:
        pass


def _write(path, text):
    """Write text to path through a temporary file and a rename (atomic on littlefs and POSIX)."""
    import os
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    try:
        os.rename(tmp, path)
    except OSError:            # some ports refuse to rename over an existing file
        _remove(path)
        os.rename(tmp, path)
