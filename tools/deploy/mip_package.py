"""The mip `package.json` at the repository root, so `mpremote mip install` installs the firmware:

    mpremote mip install github:OWNER/REPO            # from GitHub (package.json at the root)
    mpremote mip install ./package.json               # from a checkout

mip puts the files under /lib on the board (on sys.path): /lib/device/..., /lib/shared/...,
/lib/boards/... (every board definition). The board config, the device key and the root
main.py are provisioning, not code: `becomingone flash --config-only` writes them.

URLs are relative to package.json, so forks work unchanged. This tool writes or checks it:

    python -m tools.deploy.mip_package --write     # regenerate after adding/removing modules
    python -m tools.deploy.mip_package --check     # exit 1 if package.json is stale
"""
import argparse
import json
import os
import re
import sys

from tools.mpy_check import ROOT

PACKAGES = ("shared", "device", "boards")
PATH = os.path.join(ROOT, "package.json")


def _version(root=ROOT):
    """shared/version.py's __version__ (the one definition; pyproject.toml reads it too)."""
    with open(os.path.join(root, "shared", "version.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    if not m:
        raise ValueError("shared/version.py has no __version__ = \"X.Y.Z\"")
    return m.group(1)


def firmware_files(root=ROOT):
    """Repo-relative .py files of shared/, device/ and boards/ (sorted, no tests, no caches)."""
    out = []
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith(".py") and not f.startswith("manifest"):
                    out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return out


def package_json(root=ROOT):
    return {"urls": [[p, p] for p in firmware_files(root)], "deps": [], "version": _version(root)}


def render(root=ROOT):
    """package.json text: one URL pair per line (diffs stay readable)."""
    d = package_json(root)
    urls = ",\n".join("    " + json.dumps(u) for u in d["urls"])
    return '{\n  "urls": [\n%s\n  ],\n  "deps": [],\n  "version": %s\n}\n' % (urls, json.dumps(d["version"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description="write or check the mip package.json")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    text = render()
    if a.write:
        with open(PATH, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote %s (%d files)" % (PATH, len(package_json()["urls"])))
        return 0
    try:
        with open(PATH, encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = ""
    if current != text:
        print("package.json is stale: run `python -m tools.deploy.mip_package --write`")
        return 1
    print("package.json is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
