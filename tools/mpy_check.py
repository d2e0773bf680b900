"""Lane 3: every module of device/ and shared/ compiles with mpy-cross for the Pico (armv6m).

Usage: python tools/mpy_check.py [--march armv6m] [--out DIR]
Prints one line per module and a closing line "N passed, N failed".
"""
import argparse
import os
import subprocess
import sys
import tempfile

from becomingone.deploy.sources import mpy_cross_cmd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("shared", "device")


def modules(root=ROOT, packages=PACKAGES):
    for pkg in packages:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith(".py"):
                    yield os.path.relpath(os.path.join(dirpath, f), root)


def compile_all(march="armv6m", out=None, root=ROOT):
    """Compile every module; returns list of (relpath, ok, message, out_path)."""
    results = []
    out = out or tempfile.mkdtemp(prefix="mpy-")
    for rel in modules(root):
        dst = os.path.join(out, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        cmd = mpy_cross_cmd() + ["-march=" + march, "-s", rel, "-o", dst, rel]
        p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        results.append((rel, p.returncode == 0, (p.stderr or p.stdout).strip(), dst))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--march", default="armv6m")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    res = compile_all(a.march, a.out)
    ok = sum(1 for r in res if r[1])
    for rel, good, msg, dst in res:
        print(("PASS " if good else "FAIL ") + rel + ("" if good else "\n    " + msg))
    print("%d passed, %d failed" % (ok, len(res) - ok))
    return 0 if ok == len(res) and res else 1


if __name__ == "__main__":
    sys.exit(main())
