"""Run one script on the emulated Pico through its raw REPL (as `mpremote run` would on a board).

    res = run_script({"device/beat.mpy": ..., "x.py": b"..."}, "x.py", ["--beats", "10"])
    res.rc, res.stdout (bytes, binary-safe), res.stderr (text), res.stats (dict), res.resets

The files are put on the board's littlefs filesystem, the board boots, the runner interrupts a
main.py if there is one, and runs the script as __main__ with sys.argv = [script, *args] and its
folder on sys.path. Exit status: the script's (0, n for sys.exit(n), 1 for an uncaught exception:
its traceback is in stderr), 124 on a timeout, 125 when the emulator fails (a message in stderr).
Time on the board is the RP2040's timer at 125 MHz of emulated cycles: `time.ticks_us()` on the
board measures the chip, not this machine.
"""
import os
import subprocess
import tempfile

from becomingone.rp2040 import chip, fsimage


class RunResult:
    def __init__(self, rc, stdout, stderr, stats):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.stats = stats
        self.resets = [ln for ln in stderr.splitlines() if ln.startswith("[rp2run] event reset")]

    @property
    def text(self):
        """stdout as text with the board's \\r\\n line ends."""
        return self.stdout.decode("latin-1").replace("\r\n", "\n")

    def __repr__(self):
        return "<RunResult rc=%d stdout=%d bytes>" % (self.rc, len(self.stdout))


def run_script(files, script, args=(), firmware=None, adc=(), wall_timeout=900, emu_timeout=None,
               profile=None, fs_out=None, image=None):
    """Run `script` (a path in `files`, or host text given as `files[script]`) on the chip."""
    fw = chip.firmware(firmware)
    chip.ensure_installed()
    if script.lstrip("/") not in {k.lstrip("/") for k in files}:
        raise ValueError("the script %s is not among the files put on the board" % script)
    with tempfile.TemporaryDirectory(prefix="becomingone-rp2040-") as tmp:
        img = os.path.join(tmp, "fs.img")
        with open(img, "wb") as f:
            f.write(image if image is not None else fsimage.build(files))
        argv = chip.runner_argv(fw, fs=img, fs_out=fs_out, adc=adc, profile=profile,
                                wall_timeout=wall_timeout, emu_timeout=emu_timeout,
                                mode=["--raw", "--script", "/" + script.lstrip("/"), "--"] + list(args))
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=(wall_timeout or 3600) + 60)
    err = p.stderr.decode("utf-8", "replace")
    return RunResult(p.returncode, p.stdout, err, chip.parse_stats(err))
