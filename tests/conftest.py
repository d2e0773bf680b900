import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Same path order as tests/mpy_runner.py: the fake machine module first, then the repo.
for p in (os.path.join(ROOT, "tests", "fakes"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)
