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
