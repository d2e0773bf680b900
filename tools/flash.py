"""Same as `becomingone flash` (options identical), for a checkout without the package installed:

    python tools/flash.py --board pico --port /dev/ttyACM0 --dry-run
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from becomingone.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["flash"] + sys.argv[1:]))
