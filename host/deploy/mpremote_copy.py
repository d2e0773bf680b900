"""Copying a plan to a board with mpremote (its serial transport, one connection for the whole
deploy), and the equivalent `mpremote` command lines for the dry run.

Steps: connect, raw REPL (mpremote's Ctrl-C + Ctrl-A + soft reset; with `wait`, knocked again
every KNOCK_S until the board answers or `wait` s have passed: a board whose firmware turned
Ctrl-C off answers only within its boot grace period, and a port that stays while the board
resets, such as a UART adapter's or an emulated board's, never "appears"), create folders, remove
stale files in the folders the deploy owns (a stale device/x.py would shadow device/x.mpy:
MicroPython imports .py before .mpy), write every file (rich progress bar, by bytes), then
`machine.reset()` (mpremote's `reset` command) unless told not to.
"""
import contextlib
import io
import shlex
import time

from becomingone.errors import UserError

CHUNK = 1024  # bytes per raw-paste write (mpremote's CLI uses 256; raw-paste flow control makes any size safe)
KNOCK_S = 2.0     # one try at the raw REPL while waiting: Ctrl-C, Ctrl-A, this long for its prompt
RAW_REPL_S = 10   # the try without --wait (mpremote's own default)
# mpremote reads a pty byte by byte with a blocking read; without a read timeout on the port its
# own deadlines never fire there, and a board that does not answer hangs the deploy for good
READ_TIMEOUT_S = 0.2
RESET_CODE = "import time, machine; time.sleep_ms(100); machine.reset()"


def cli_commands(port, items, staging_hint, dirs, stale_dirs, reset=True):
    """mpremote command lines equivalent to the deploy (for the plan; secrets are shown as the
    staged file's name, never their content)."""
    q = shlex.quote
    lines = []
    for d in stale_dirs:
        lines.append("mpremote connect %s rm -r :%s    # if present (stale files)" % (q(port), d))
    for d in dirs:
        lines.append("mpremote connect %s fs mkdir :%s" % (q(port), d))
    for it in items:
        lines.append("mpremote connect %s fs cp %s :%s" % (q(port), q(staging_hint + "/" + it.remote), it.remote))
    if reset:
        lines.append("mpremote connect %s reset" % q(port))
    return lines


def _transport(port, wait=0):
    try:
        # mpremote: optional (the `flash` extra), loaded only when a board is flashed
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
    except ImportError:
        raise UserError("mpremote is not installed (pip install 'becomingone-edge[flash]' or pip install mpremote)") from None
    try:
        t = SerialTransport(port, baudrate=115200, wait=int(wait))
    except TransportError as e:
        raise UserError("cannot open %s: %s (is the board plugged in, and is no other program "
                        "such as a serial monitor using it?)" % (port, e.args[0] if e.args else e)) from None
    return t


def _remote_walk(t, top):
    """Files and folders under `top` on the board (folders deepest first)."""
    files, dirs = [], []
    try:
        entries = t.fs_listdir(top)
    except OSError:
        return files, dirs
    for e in entries:
        path = top + "/" + e.name
        if e.st_mode & 0x4000:
            f2, d2 = _remote_walk(t, path)
            files += f2
            dirs += d2
            dirs.append(path)
        else:
            files.append(path)
    return files, dirs


def _blocks(n, bsize):
    return -(-n // bsize) * bsize if n else 0


def check_space(t, items, doomed):
    """Refuse the deploy if the board's filesystem cannot take it: the new files (rounded up to
    its blocks) minus what they replace or what is removed must fit in the free space
    (`os.statvfs('/')` on the board). Returns (free, needed) in bytes, or None when the board
    cannot tell."""
    # mpremote: optional (the `flash` extra), loaded only when a board is flashed
    from mpremote.transport import TransportExecError

    try:
        st = t.eval("__import__('os').statvfs('/')")
    except (TransportExecError, ValueError, SyntaxError):
        return None
    bsize, free = st[0] or 4096, st[0] * st[4]
    paths = sorted(set(it.remote for it in items) | set(doomed))
    code = ("import os\n_t = 0\nfor _p in %r:\n try:\n  _t += -(-os.stat(_p)[6] // %d) * %d\n"
            " except OSError:\n  pass\nprint(_t)" % (paths, bsize, bsize))
    reclaim = int(t.exec(code).strip() or 0)
    needed = sum(_blocks(it.size, bsize) for it in items) - reclaim
    if needed > free:
        raise UserError("the board's filesystem has %d bytes free; this deploy needs %d more "
                        "(remove files on the board, or freeze the firmware into the image: "
                        "boards/manifest_*.py and --config-only)" % (free, needed))
    return free, needed


def _enter_raw_repl(t, wait):
    """mpremote's raw REPL on transport `t`: one try of RAW_REPL_S without `wait`; with it, a try
    every KNOCK_S until the board answers or `wait` s have passed. Raises TransportError."""
    from mpremote.transport import TransportError
    deadline = time.monotonic() + wait
    ser = t.serial
    ser.timeout = READ_TIMEOUT_S
    try:
        while True:
            # mpremote prints what it read when a try fails: a running firmware's frames
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    t.enter_raw_repl(soft_reset=True, timeout_overall=KNOCK_S if wait else RAW_REPL_S)
                    return
                except TransportError:
                    if time.monotonic() >= deadline:
                        raise
    finally:
        ser.timeout = None          # mpremote's own reads from here on (raw paste, follow)


def deploy(port, items, dirs, stale_dirs, reset=True, progress=None, before_reset=None, wait=0):
    """Copy staged items to the board on `port`. `progress(item, done_bytes, total_bytes)` is
    called as bytes go out; `before_reset()` once every file is on the board (the key is
    registered then, so a failed copy leaves the keystore as it was).
    Returns {"removed": [...], "written": [...], "reset": bool}."""
    # mpremote: optional (the `flash` extra), loaded only when a board is flashed
    from mpremote.transport import TransportError, TransportExecError

    t = _transport(port, wait)
    removed, written = [], []
    try:
        try:
            _enter_raw_repl(t, wait)
        except TransportError as e:
            raise UserError("%s does not answer like a MicroPython board (%s). Is MicroPython "
                            "on it (hold BOOTSEL, plug in, copy the .uf2)? Is the firmware running "
                            "with the serial link (it turns Ctrl-C off)? Then run flash with "
                            "--wait 30 and unplug/replug (power-cycle) the board while it waits: "
                            "flash knocks until the board answers within the firmware's boot "
                            "grace period (docs/FLASHING.md)" % (port, e)) from None
        keep = set(it.remote for it in items)
        walked = [(top,) + _remote_walk(t, top) for top in stale_dirs]
        check_space(t, items, [f for _top, files, _d in walked for f in files if f not in keep])
        for top, files, subdirs in walked:
            for f in files:
                if f not in keep:
                    t.fs_rmfile(f)
                    removed.append(f)
            for d in subdirs:
                if not any(k.startswith(d + "/") for k in keep):
                    t.fs_rmdir(d)
                    removed.append(d + "/")
        for d in dirs:
            if not t.fs_isdir(d):
                t.fs_mkdir(d)
        total = sum(it.size for it in items)
        done = 0
        for it in items:
            with open(it.local, "rb") as f:
                data = f.read()
            base = done

            def cb(n, _size, it=it, base=base):
                if progress:
                    progress(it, base + n, total)

            t.fs_writefile(it.remote, data, chunk_size=CHUNK, progress_callback=cb)
            done += len(data)
            if progress:
                progress(it, done, total)
            written.append(it.remote)
        if before_reset:
            before_reset()
        if reset:
            t.exec_raw_no_follow(RESET_CODE)
    except (TransportError, TransportExecError) as e:
        raise UserError("mpremote failed on %s: %s" % (port, e)) from None
    except OSError as e:
        raise UserError("board file operation failed on %s: %s" % (port, e)) from None
    finally:
        try:
            if t.in_raw_repl and not reset:
                t.exit_raw_repl()
            t.close()
        except OSError:
            pass
    return {"removed": removed, "written": written, "reset": reset}
