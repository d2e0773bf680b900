"""A mip package for ONE board: only the files that board runs, compiled to .mpy for its
architecture (docs/FLASHING.md, "mip").

    becomingone flash --board pico --mip-package DIR      # writes DIR/package.json + DIR/**.mpy

then `mpremote mip install DIR/package.json` (from this machine), or serve DIR over HTTP and
`mip.install("http://HOST/DIR/package.json")` on a Pico W. mip puts the files under /lib:
/lib/device/..., /lib/shared/..., /lib/boards/__init__.mpy and the board's own definition (and
the ones it imports: pico_w builds on pico) -- never another board's, never .py sources. The
board config, its key and the root main.py are provisioning: `becomingone flash --config-only`.
"""
import json
import os

from becomingone.deploy.plan import ROOT, TARGETS, Item, build, source_modules
from becomingone.errors import UserError

__all__ = ["write_mip_package"]


def write_mip_package(board, out, root=ROOT, version=None):
    """Compile `board`'s modules into `out` and write out/package.json; returns its dict."""
    t = TARGETS.get(board)
    if t is None or t["runtime"] != "micropython" or t["march"] in (None, "host"):
        allowed = sorted(b for b, x in TARGETS.items()
                         if x["runtime"] == "micropython" and x["march"] not in (None, "host"))
        raise UserError("--mip-package is for MicroPython boards (allowed: %s; the pizero runs "
                        "CPython: use its bundle, --out)" % ", ".join(allowed))
    items = [Item("mpy", rel[:-3] + ".mpy", source=rel) for rel in source_modules(board, root)]
    os.makedirs(out, exist_ok=True)
    build(items, board, staging=out, root=root)
    urls = [[it.remote.replace(os.sep, "/"), it.remote.replace(os.sep, "/")] for it in items]
    if version is None:
        import becomingone
        version = becomingone.__version__
    pkg = {"urls": urls, "deps": [], "version": version}
    with open(os.path.join(out, "package.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(pkg, indent=1) + "\n")
    return pkg
