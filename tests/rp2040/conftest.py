"""Lane 4: the firmware on the emulated RP2040 (host/rp2040). Run by tools/test.sh as
`python -m pytest tests/rp2040`; plain `pytest` does not collect this folder (pyproject
norecursedirs): it needs Node.js and rp2040js and takes minutes of wall time.

A machine without Node fails here with the message saying what to install: the lane is not
skipped, because CI must run it (.ci/run installs nodejs and npm).
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def chip():
    """The emulator installed (npm ci on first use) and the firmware it boots."""
    from becomingone.rp2040 import chip as C
    from becomingone.rp2040.errors import UserError
    try:
        C.ensure_installed(log=lambda m: sys.stderr.write(m + "\n"))
        fw = C.firmware()
    except UserError as e:
        pytest.fail("the emulated RP2040 cannot run here: %s" % e)
    sys.stderr.write("\n[lane 4] booting %s\n" % fw.describe())
    return fw


@pytest.fixture(scope="session")
def firmware_files(chip):
    """The project's firmware compiled for the chip (armv6m .mpy), boards pico and emulator."""
    from becomingone.rp2040 import build
    return build.firmware_modules(("pico", "emulator"))
