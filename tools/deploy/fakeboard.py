# A fake MicroPython board: the REPL side of a real board, for the MicroPython unix port.
#
# Run by `micropython` INSIDE the bubblewrap sandbox built by tools/deploy/fakeboard_host.py
# (never on its own: the unix port sees the real filesystem, and mpremote writes wherever it
# is told). stdin/stdout are the board's USB serial; the host side puts them on a pty.
#
# It speaks the protocol mpremote (transport_serial.py) and pyboard.py speak, as
# shared/runtime/pyexec.c implements it on real boards:
#   friendly REPL  ">>> " with echo; Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C clear line,
#                  Ctrl-D on an empty line soft reset (boot.py, then main.py)
#   raw REPL       "raw REPL; CTRL-B to exit\r\n>"; bytes up to Ctrl-D are a program, answered
#                  "OK" <stdout> \x04 <traceback> \x04 ">"; Ctrl-D on an empty program is a soft
#                  reset ("OK\r\nMPY: soft reboot\r\n", boot.py, no main.py, raw REPL again);
#                  Ctrl-A restarts raw mode, Ctrl-B returns to the friendly REPL, Ctrl-C clears
#   raw paste      "\x05A\x01" -> "R\x01" + window (u16 LE) + "\x01"; the host sends at most a
#                  window ahead, the board sends "\x01" for every window consumed; Ctrl-D ends
#                  (answered "\x04"), Ctrl-C aborts; then <stdout> \x04 <traceback> \x04 ">"
# machine.reset() ends this process with exit code 42: the host side starts a fresh one in the
# same sandbox (a real hard reset: new interpreter, boot.py, main.py). machine.soft_reset() is a
# soft reset. Ctrl-C while a program runs: the host side turns the 0x03 byte into SIGINT (as the
# USB CDC driver of a real board raises KeyboardInterrupt); the board enables the interrupt only
# while user code runs.
import sys
import os
import micropython

HARD_RESET_EXIT = 42
WINDOW = 128  # raw-paste flow-control window (bytes)
BANNER = b"MicroPython (BecomingONE fake board: unix port in a sandbox); Type \"help()\" for more information.\r\n"

_in = sys.stdin.buffer
_out = sys.stdout.buffer


class _HardReset(Exception):
    pass


class _SoftReset(Exception):
    pass


def _machine_module():
    # The fake board's `machine`: the unix port's own attributes plus reset()/soft_reset().
    import machine as real

    class FakeMachine:
        pass

    m = FakeMachine()
    for name in dir(real):
        if not name.startswith("__"):
            setattr(m, name, getattr(real, name))

    def reset():
        raise _HardReset()

    def soft_reset():
        raise _SoftReset()

    def unique_id():
        return b"FAKEBRD0"

    def reset_cause():
        return 1

    m.reset = reset
    m.soft_reset = soft_reset
    m.unique_id = unique_id
    m.reset_cause = reset_cause
    m.PWRON_RESET = 1
    m.__name__ = "machine"
    return m


def w(b):
    if isinstance(b, str):
        b = b.encode()
    _out.write(b)


def rx():
    # One byte from the host. A SIGINT that lands while we are in the REPL itself is dropped:
    # the 0x03 byte that caused it arrives in the stream as well.
    while True:
        try:
            b = _in.read(1)
        except KeyboardInterrupt:
            continue
        if not b:
            raise SystemExit(0)  # the host closed the port: power off
        return b[0]


class Board:
    def __init__(self):
        self.baseline = set(sys.modules.keys())
        self.machine = _machine_module()
        self.raw = False
        self.ns = None
        self.reset_state()

    def reset_state(self):
        for name in list(sys.modules.keys()):
            if name not in self.baseline:
                del sys.modules[name]
        sys.modules["machine"] = self.machine
        sys.path[:] = ["", "/lib"]
        try:
            os.chdir("/")
        except OSError:
            pass
        self.ns = {"__name__": "__main__"}

    def run_user(self, fn, *args):
        """Run user code with Ctrl-C enabled; returns the exception it raised (or None).
        Hard/soft reset requests go up."""
        try:
            micropython.kbd_intr(3)
            try:
                fn(*args)
            finally:
                micropython.kbd_intr(-1)
        except (_HardReset, _SoftReset):
            raise
        except BaseException as e:  # user code: KeyboardInterrupt, SystemExit, any error
            return e
        return None

    def run_file(self, path):
        try:
            os.stat(path)
        except OSError:
            return
        with open(path) as f:
            src = f.read()
        ns = {"__name__": "__main__", "__file__": path}
        e = self.run_user(exec, src, ns)
        if e is not None and not isinstance(e, SystemExit):
            sys.print_exception(e, sys.stdout)

    def boot(self, run_main):
        self.run_file("boot.py")
        if run_main:
            self.run_file("main.py")

    # ---- raw REPL
    def exec_program(self, src):
        e = self.run_user(exec, src, self.ns)
        w(b"\x04")
        if e is not None and not isinstance(e, SystemExit):
            sys.print_exception(e, sys.stdout)
        w(b"\x04")

    def raw_paste(self):
        w(b"R\x01")
        w(bytes((WINDOW & 0xFF, WINDOW >> 8, 1)))
        buf = bytearray()
        remain = WINDOW
        while True:
            c = rx()
            if c == 3 or c == 4:
                w(b"\x04")
                if c == 3:
                    w(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04")
                    return
                break
            buf.append(c)
            remain -= 1
            if remain == 0:
                w(b"\x01")
                remain = WINDOW
        self.exec_program(bytes(buf))

    def raw_repl(self):
        w(b"raw REPL; CTRL-B to exit\r\n")
        line = bytearray()
        while True:
            line = bytearray()
            w(b">")
            while True:
                c = rx()
                if c == 1:  # Ctrl-A: raw-paste request or raw REPL reset
                    if len(line) == 2 and line[0] == 5:
                        if line[1] == ord("A"):
                            self.raw_paste()
                        else:
                            w(b"R\x00")
                        line = bytearray()
                        w(b">")
                        continue
                    w(b"raw REPL; CTRL-B to exit\r\n")
                    line = bytearray()
                    w(b">")
                    continue
                if c == 2:  # Ctrl-B: friendly REPL
                    w(b"\r\n")
                    self.raw = False
                    return
                if c == 3:
                    line = bytearray()
                    continue
                if c == 4:
                    break
                line.append(c)
            w(b"OK")
            if not line:
                w(b"\r\n")
                raise _SoftReset()
            self.exec_program(bytes(line))

    # ---- friendly REPL
    def friendly_line(self, src):
        if not src.strip():
            return
        try:
            code = compile(src, "<stdin>", "single")
        except SyntaxError as e:
            sys.print_exception(e, sys.stdout)
            return
        e = self.run_user(exec, code, self.ns)
        if e is not None and not isinstance(e, SystemExit):
            sys.print_exception(e, sys.stdout)

    def friendly_repl(self):
        w(BANNER)
        while True:
            w(b">>> ")
            line = bytearray()
            while True:
                c = rx()
                if c == 1:
                    w(b"\r\n")
                    self.raw = True
                    return
                if c == 2:
                    w(b"\r\n" + BANNER + b">>> ")
                    line = bytearray()
                    continue
                if c == 3:
                    w(b"\r\n>>> ")
                    line = bytearray()
                    continue
                if c == 4:
                    if not line:
                        w(b"\r\n")
                        raise _SoftReset()
                    continue
                if c == 13 or c == 10:
                    w(b"\r\n")
                    break
                if c in (8, 127):
                    if line:
                        line.pop()
                        w(b"\x08 \x08")
                    continue
                line.append(c)
                _out.write(bytes((c,)))
            self.friendly_line(bytes(line).decode())

    def repl(self):
        while True:
            try:
                if self.raw:
                    self.raw_repl()
                else:
                    self.friendly_repl()
            except KeyboardInterrupt:
                # a late SIGINT (Ctrl-C after the user code it aimed at had ended): the REPL
                # carries on in the same mode, as a real board does
                continue

    def run(self):
        """Power on: boot.py and main.py, then the REPL; soft resets loop here."""
        first = True
        while True:
            try:
                if not first:
                    w(b"MPY: soft reboot\r\n")
                self.reset_state()
                self.boot(run_main=first or not self.raw)
                first = False
                self.repl()
            except _SoftReset:
                first = False
                continue
            except _HardReset:
                return HARD_RESET_EXIT


def main():
    micropython.kbd_intr(-1)
    try:
        code = Board().run()
    except SystemExit:
        code = 0
    sys.exit(code)


main()
