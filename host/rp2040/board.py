"""A running emulated Pico whose USB CDC serial port is a pseudo-terminal on this machine.

    pico = EmulatedPico(files={...}).start()      # or image=..., or nothing: a blank board
    pico.port                                      # e.g. /dev/pts/7: mpremote, pyserial, the host
    pico.wait_for_output(b">>> ")                  # (only while nobody else reads the port)
    pico.resets, pico.power_cycle(), pico.stop() -> stats; pico.files() -> the board's files

It is MicroPython's own USB serial port, as on a real Pico: the REPL, raw REPL and raw-paste mode
(mpremote), `machine.reset()`, the watchdog (the board resets and keeps its flash: files written
by mpremote or by the firmware survive), and binary frames once the firmware's serial link runs.
The port stays open across resets (like a USB-serial adapter rather than a USB device that
re-enumerates), so a reader does not have to reopen it.

The pty is made with os.openpty(); this process keeps the slave side open so the port never
reads EIO when no client has it open, and copies bytes between the master side and the Node
runner (emu/rp2run.mjs --serial). With `attach=PATH` the board is wired to an existing pty slave
instead (the emulation's fault proxy). Bytes the board sends while no one reads the port are
kept up to `backlog` bytes (the oldest beyond that are dropped and counted), as a real CDC port's
host-side buffer would.

Time on the board is emulated: it runs at most as fast as the wall clock (`--realtime`; idle time
is fast-forwarded only up to the wall clock) and slower while the chip is busy (the emulator
executes 2-5 emulated seconds of busy CPU per wall second). A host talking to it sees a device
clock that runs slow; the coordinator's clock estimator takes it as drift.
"""
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
import tty

from becomingone.rp2040 import chip, fsimage
from becomingone.rp2040.errors import UserError


class EmulatedPico:
    def __init__(self, files=None, image=None, firmware=None, adc=(), attach=None, log_path=None,
                 backlog=256 * 1024, name="pico", tap=False):
        self.fw = chip.firmware(firmware)
        self.files = files
        self.image = image
        self.adc = list(adc)
        self.attach = attach
        self.log_path = log_path
        self.backlog = backlog
        self.name = name
        self.proc = None
        self.port = None
        self.master = None
        self._slave = None
        self._tmp = None
        self.resets = 0
        self.watchdog_resets = 0
        self.events = []
        self.stats = {}
        self.dropped = 0
        self.bytes_up = 0         # board -> port
        self.bytes_down = 0       # port -> board
        self._tap = bytearray()   # a copy of the board's output for wait_for_output()
        self.tap = tap            # keep a copy of the output (wait_for_output)
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()
        self.boots = 0

    # ------------------------------------------------------------------ life cycle
    def start(self):
        chip.ensure_installed()
        self._tmp = tempfile.mkdtemp(prefix="becomingone-pico-")
        self.fs_path = os.path.join(self._tmp, "fs.img")
        self.fs_out = os.path.join(self._tmp, "fs-out.img")
        if self.image is None and self.files is not None:
            self.image = fsimage.build(self.files)
        if self.image is not None:
            with open(self.fs_path, "wb") as f:
                f.write(self.image)
        if self.port is None:
            if self.attach:
                fd = os.open(self.attach, os.O_RDWR | os.O_NOCTTY)
                tty.setraw(fd)
                self.master, self.port = fd, self.attach
            else:
                self.master, self._slave = os.openpty()
                tty.setraw(self._slave)
                self.port = os.ttyname(self._slave)
            os.set_blocking(self.master, False)
        self._spawn()
        return self

    def _spawn(self):
        self._stop.clear()
        fs = self.fs_path if os.path.exists(self.fs_path) else None
        argv = chip.runner_argv(self.fw, fs=fs, fs_out=self.fs_out, adc=self.adc, realtime=True,
                                mode=["--serial"])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.boots += 1
        self._threads = [threading.Thread(target=f, name="%s-%s" % (self.name, f.__name__), daemon=True)
                         for f in (self._up, self._down, self._err)]
        for t in self._threads:
            t.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """End the run (stdin closed, then SIGTERM, then SIGKILL, by PID); the board's
        filesystem is kept for files() and a later start(). Returns the runner's stats."""
        p = self.proc
        if p is None:
            return self.stats
        self._stop.set()
        if p.poll() is None:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for t in self._threads:
            t.join(timeout=5)
        self._close_pipes(p)
        self.proc = None
        if os.path.exists(self.fs_out):
            os.replace(self.fs_out, self.fs_path)     # the next start() boots what the board kept
        return self.stats

    def kill(self):
        """A power cut: the runner is killed; the filesystem is what it was at the last stop()."""
        if self.proc is not None and self.proc.poll() is None:
            self._stop.set()
            self.proc.kill()
            self.proc.wait()
            for t in self._threads:
                t.join(timeout=5)
            self._close_pipes(self.proc)
        self.proc = None

    @staticmethod
    def _close_pipes(p):
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass

    def restart(self):
        """Power the board off and on again (a new runner from the kept filesystem)."""
        self.stop()
        self._spawn()
        return self

    def power_cycle(self):
        """Reset the chip in place (RAM and registers lost, flash kept), as a power cycle."""
        if self.alive():
            self.proc.send_signal(signal.SIGUSR1)

    def close(self):
        self.stop()
        for fd in (self.master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self._slave = None
        if self._tmp:
            import shutil
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ the board's files
    def files_now(self):
        """The board's files as of the last stop() (or the image it started from)."""
        if not os.path.exists(self.fs_path):
            return {}
        with open(self.fs_path, "rb") as f:
            return fsimage.read(f.read())

    # ------------------------------------------------------------------ pumps
    def _up(self):
        """board -> port (master), with a bounded backlog when no one reads the port."""
        src = self.proc.stdout.fileno()
        pending = bytearray()
        eof = False
        while not (eof and (self._stop.is_set() or not pending)):
            try:
                r, w, _ = select.select([] if eof else [src], [self.master] if pending else [],
                                        [], 0.05)
            except (OSError, ValueError):
                return
            if r:
                try:
                    data = os.read(src, 65536)
                except OSError:
                    data = b""
                if not data:
                    eof = True
                else:
                    pending += data
                    self.bytes_up += len(data)
                    if self.tap:
                        with self._lock:
                            self._tap += data
                    if len(pending) > self.backlog:
                        cut = len(pending) - self.backlog
                        del pending[:cut]
                        self.dropped += cut
            if w and pending:
                try:
                    n = os.write(self.master, pending)
                    del pending[:n]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    time.sleep(0.01)     # EIO: the attached pty has no reader right now

    def _down(self):
        """port (master) -> board."""
        dst = self.proc.stdin
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.master], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                time.sleep(0.01)
                continue
            if not data:
                continue
            try:
                dst.write(data)
                dst.flush()
                self.bytes_down += len(data)
            except (BrokenPipeError, ValueError, OSError):
                return

    def _err(self):
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            for raw in iter(self.proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if log:
                    log.write(raw)
                    log.flush()
                if line.startswith("[rp2run] event reset"):
                    self.resets += 1
                    if "reason=watchdog" in line:
                        self.watchdog_resets += 1
                    self.events.append(line)
                elif line.startswith("[rp2run] stats "):
                    self.stats = chip.parse_stats(line)
                elif line.strip():
                    self.events.append(line)
        finally:
            if log:
                log.close()

    # ------------------------------------------------------------------ helpers for tests
    def wait_for_output(self, needle, timeout=30.0, since=0):
        """Wait until the board has written `needle` (after byte `since` of what it wrote while
        `tap` was on); returns the offset just past it. Raises UserError on a timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                i = self._tap.find(needle, since)
                if i >= 0:
                    return i + len(needle)
            if not self.alive():
                break
            time.sleep(0.02)
        with self._lock:
            tail = bytes(self._tap[-300:])
        raise UserError("the emulated Pico did not write %r within %.0f s (last output: %r; "
                        "events: %s)" % (needle, timeout, tail, self.events[-5:]))

    def write(self, data):
        """Send bytes to the board as a client of the port would (tests without a client)."""
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
