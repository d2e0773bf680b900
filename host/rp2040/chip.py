"""The emulated Pico's parts: the MicroPython firmware image, Node.js and rp2040js (npm), and the
command line of the Node runner (emu/rp2run.mjs).

Firmware: `firmware/RPI_PICO.uf2` (MicroPython v1.28.0 built from source, firmware/README.md),
checked against its sha256 before it boots; or any RPI_PICO .uf2 named by
BECOMINGONE_RP2040_FIRMWARE (an official release, say) or by a `firmware=` argument.
Node: the `node` on PATH (Debian's nodejs; .ci/run installs it), version 18 or newer.
rp2040js: installed into emu/node_modules by `npm ci` from emu/package-lock.json on first use
(`ensure_installed()`), and again whenever the lock file is newer than the install.
"""
import hashlib
import os
import shutil
import subprocess

from becomingone.rp2040.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
EMU_DIR = os.path.join(HERE, "emu")
RUNNER = os.path.join(EMU_DIR, "rp2run.mjs")
FIRMWARE_DIR = os.path.join(HERE, "firmware")
FIXTURE = os.path.join(FIRMWARE_DIR, "RPI_PICO.uf2")
FIXTURE_SYMS = os.path.join(FIRMWARE_DIR, "RPI_PICO.syms")
FIXTURE_SHA256 = "b2ab8414626b62e7e302ec9cf9a4bc8f07f9c2680b73ad5327a5d7ef87cd00e0"
ENV_FIRMWARE = "BECOMINGONE_RP2040_FIRMWARE"

# The RPI_PICO board's filesystem (MicroPython: MICROPY_HW_FLASH_STORAGE_BYTES = 1408 KiB at the
# end of the 2 MiB flash); an official RPI_PICO release uses the same layout.
FS_OFFSET = 0xA0000
FS_BLOCK = 4096
FS_BLOCKS = 352
CLK_SYS_HZ = 125_000_000

# exit statuses of the runner besides the script's own
EXIT_TIMEOUT = 124
EXIT_EMULATOR = 125


class Firmware:
    """A .uf2 to boot: its path, sha256, and whether it is the project's fixture."""

    def __init__(self, path, sha256, fixture):
        self.path = path
        self.sha256 = sha256
        self.fixture = fixture

    def describe(self):
        what = "the project's MicroPython v1.28.0 RPI_PICO build" if self.fixture else "named by you"
        return "%s (%s, sha256 %s)" % (self.path, what, self.sha256[:16])

    def __repr__(self):
        return "<Firmware %s>" % self.describe()


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def firmware(path=None):
    """The firmware to boot: `path`, else $BECOMINGONE_RP2040_FIRMWARE, else the fixture."""
    named = path or os.environ.get(ENV_FIRMWARE) or None
    p = os.path.abspath(os.path.expanduser(named)) if named else FIXTURE
    source = ("--firmware" if path else ENV_FIRMWARE) if named else "the fixture"
    if not os.path.isfile(p):
        raise UserError("RP2040 firmware %s (from %s) does not exist: give an RPI_PICO .uf2 from "
                        "https://micropython.org/download/RPI_PICO/, or unset %s to use %s"
                        % (p, source, ENV_FIRMWARE, FIXTURE))
    size = os.path.getsize(p)
    if size == 0 or size % 512:
        raise UserError("RP2040 firmware %s is not a UF2 file (%d bytes, not a multiple of 512)"
                        % (p, size))
    digest = _sha256(p)
    fixture = os.path.realpath(p) == os.path.realpath(FIXTURE)
    if fixture and digest != FIXTURE_SHA256:
        raise UserError("%s has sha256 %s, not the recorded %s (firmware/README.md): the file is "
                        "damaged or was replaced (a Git LFS pointer?); restore it with git, or name "
                        "another image with %s" % (p, digest, FIXTURE_SHA256, ENV_FIRMWARE))
    return Firmware(p, digest, fixture)


def node():
    """The node executable (18 or newer), or UserError saying how to install it."""
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None:
        raise UserError("the emulated RP2040 needs Node.js 18 or newer, and `node` is not on PATH: "
                        "sudo apt-get install nodejs npm (.ci/run does this)")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout
        major = int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        raise UserError("cannot run %s --version" % exe) from None
    if major < 18:
        raise UserError("the emulated RP2040 needs Node.js 18 or newer; %s is %s" % (exe, out.strip()))
    return exe


def _installed_ok():
    mod = os.path.join(EMU_DIR, "node_modules", "rp2040js", "package.json")
    stamp = os.path.join(EMU_DIR, "node_modules", ".package-lock.json")
    lock = os.path.join(EMU_DIR, "package-lock.json")
    return (os.path.exists(mod) and os.path.exists(stamp)
            and os.path.getmtime(stamp) >= os.path.getmtime(lock))


def ensure_installed(log=None):
    """rp2040js in emu/node_modules, exactly as emu/package-lock.json pins it (`npm ci`)."""
    node()
    if _installed_ok():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("rp2040js is not installed in %s and `npm` is not on PATH: "
                        "sudo apt-get install npm, then: npm ci --prefix %s" % (EMU_DIR, EMU_DIR))
    (log or print)("installing rp2040js for the emulated RP2040 (npm ci in %s) ..." % EMU_DIR)
    p = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EMU_DIR,
                       capture_output=True, text=True)
    if p.returncode != 0 or not _installed_ok():
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-8:])
        raise UserError("npm ci in %s failed (exit %d):\n%s" % (EMU_DIR, p.returncode, tail))


def runner_argv(fw, fs=None, fs_out=None, mode=("--serial",), adc=(), stats=True, profile=None,
                wall_timeout=None, emu_timeout=None, realtime=None, extra=()):
    """The Node runner's command line (see the usage at the top of emu/rp2run.mjs)."""
    a = [node(), RUNNER, "--firmware", fw.path]
    if fs:
        a += ["--fs", fs]
    if fs_out:
        a += ["--fs-out", fs_out]
    for spec in adc:
        a += ["--adc", spec]
    if stats:
        a.append("--stats")
    if profile:
        a += ["--profile", profile]
    if wall_timeout:
        a += ["--wall-timeout", str(wall_timeout)]
    if emu_timeout:
        a += ["--emu-timeout", str(emu_timeout)]
    if realtime:
        a.append("--realtime")
    return a + list(mode) + list(extra)


def adc_spec(channel=0, mid=2048, hz=0.0, amp=0, noise=0, seed=1, spikes_at=None, spikes_dur=0.0,
             spikes_amp=0):
    """An --adc value: ADC channel input in 12-bit counts as a function of emulated time (a sine,
    white noise, and optionally a train of spikes every 25 ms: an impacting machine)."""
    if channel not in (0, 1, 2, 3):
        raise UserError("ADC channel must be 0..3 (GP26..GP29), got %r" % (channel,))
    items = ["mid=%g" % mid, "hz=%g" % hz, "amp=%g" % amp, "noise=%g" % noise, "seed=%d" % seed]
    if spikes_at is not None:
        items += ["spikes_at=%g" % spikes_at, "spikes_dur=%g" % spikes_dur,
                  "spikes_amp=%g" % spikes_amp]
    return "%d:%s" % (channel, ",".join(items))


def parse_stats(stderr_text):
    """The runner's `[rp2run] stats {...}` line (the last one) as a dict, or {}."""
    import json
    for line in reversed(stderr_text.splitlines()):
        if line.startswith("[rp2run] stats "):
            try:
                return json.loads(line[len("[rp2run] stats "):])
            except ValueError:
                return {}
    return {}
