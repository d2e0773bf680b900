"""Same as `becomingone flash` (options identical), for a checkout without the package installed:

    python tools/flash.py --board pico --port /dev/ttyACM0 --dry-run
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools.checkout import use_checkout  # noqa: E402

use_checkout()
from becomingone.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["flash"] + sys.argv[1:]))
