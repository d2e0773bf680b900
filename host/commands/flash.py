"""`becomingone flash`: compile the firmware with mpy-cross for the board, provision it (board
config, device key registered in the host's keystore, Wi-Fi for pico_w) and copy it with
mpremote, then reset the board. `--dry-run` prints the plan and touches nothing.

    becomingone flash --board pico   --port /dev/ttyACM0
    becomingone flash --board pico_w --port /dev/ttyACM0 --host-url udp://192.168.1.20:18790 \\
                      --wifi-file ~/wifi.json
    becomingone flash --board pizero --host-url udp://192.168.1.20:18790 --out dist/pizero
    becomingone flash --board emulator --port /tmp/fakeboard --host-url udp://127.0.0.1:18790

Boards: pico (USB serial link), pico_w (Wi-Fi + UDP), pizero (CPython + Blinka on a Pi Zero:
builds an install bundle, see docs/FLASHING.md), emulator (a MicroPython unix-port board such
as the fake board of tools/deploy/fakeboard_host.py, for testing deploys).
"""
import json
import os
import shutil

from becomingone.commands.common import resolve_data_dir
from becomingone.config import load_config
from becomingone.deploy import pizero as Z, plan as P, provision as V
from becomingone.deploy.mpremote_copy import cli_commands, deploy
from becomingone.deploy.pizero import build_bundle
from becomingone.errors import UserError
from becomingone.ingest.keystore import fingerprint
from becomingone.util.progress import progress_bar, wants_progress

BOARDS = tuple(P.TARGETS)


def add_arguments(p):
    p.add_argument("--board", required=True, choices=BOARDS, help="target board")
    p.add_argument("--port", help="the board's serial port (e.g. /dev/ttyACM0, COM5); not for pizero")
    p.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, mpremote "
                   "commands) and touch nothing: no key, no keystore change, no file, no process")
    p.add_argument("--device-id", type=int, help="device id 1..65535 (default: next free in the keystore)")
    p.add_argument("--host-url", help="udp://HOST:PORT of the host, as the board reaches it (pico_w, "
                   "pizero; emulator: UDP instead of serial)")
    p.add_argument("--wifi-file", help="pico_w Wi-Fi credentials: JSON {\"ssid\",\"password\"} or INI "
                   "[wifi]; default: $%s / $%s" % (V.ENV_SSID, V.ENV_PASSWORD))
    p.add_argument("--data", metavar="DIR", help="the host's data folder, as for `becomingone run` "
                   "(default: the config's data_dir, else ./var/becomingone); keystore DIR/keys.json")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (data_dir, admission.keystore)")
    p.add_argument("--keystore", help="keystore file (default: the host's, see --data/--config)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rotate-key", action="store_true", help="replace the device's registered key")
    g.add_argument("--keep-key", action="store_true", help="deploy the key already registered")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra board config entry: a device/main.py flag without its dashes "
                   "(fs=500, pow_bits=12, telemetry_every=4, ...) or boot_grace_ms=N")
    p.add_argument("--config-only", action="store_true", help="only the board config, key, Wi-Fi and "
                   "main.py (for firmware frozen into the image with boards/manifest_*.py)")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board after copying")
    p.add_argument("--wait", type=int, default=0, metavar="S", help="wait up to S seconds for the "
                   "port to appear and the board to answer, knocking (Ctrl-C, Ctrl-A) every 2 s: "
                   "power-cycle a board whose firmware holds the serial port while flash waits "
                   "(docs/FLASHING.md)")
    p.add_argument("--out", help="pizero: bundle folder to create (default dist/pizero-device-ID)")
    p.add_argument("--mip-package", metavar="DIR", help="write a mip package of this board's files "
                   "only, compiled to .mpy, into DIR (DIR/package.json; then `mpremote mip install "
                   "DIR/package.json`); touches no board")


def _extra(sets):
    out = {}
    for s in sets:
        k, sep, v = s.partition("=")
        if not sep or not k or not k.replace("_", "").isalnum():
            raise UserError("--set %r: expected KEY=VALUE with KEY made of letters, digits, _" % s)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    if "wifi_file" in out:
        raise UserError("--set wifi_file: Wi-Fi comes from --wifi-file or the environment (pico_w)")
    g = out.get("boot_grace_ms")
    if g is not None and not (isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= 60000):
        raise UserError("--set boot_grace_ms must be an integer 0..60000 (ms), got %r" % (g,))
    return out


def _link(args, board):
    if board == "pico":
        if args.host_url:
            raise UserError("--board pico links over USB serial: drop --host-url (use pico_w for UDP)")
        return "serial"
    if board == "emulator" and not args.host_url:
        return "serial"
    if not args.host_url:
        raise UserError("--board %s needs --host-url udp://HOST:PORT (the host's address on the "
                        "board's network, port %d by default)" % (board, V.DEFAULT_HOST_PORT))
    # a Pi Zero may run the host coordinator itself; a Pico W never can
    host, port = V.parse_host_url(args.host_url, allow_loopback=board in ("emulator", "pizero"))
    return "udp://%s:%d" % (host, port)


def keystore_path(args):
    """The keystore the host coordinator uses: --keystore, else the config's
    admission.keystore, else DATA/keys.json with DATA resolved as `becomingone run` does."""
    if args.keystore:
        return os.path.abspath(os.path.expanduser(args.keystore))
    data = resolve_data_dir(args.data, args.config)
    if args.config:
        return load_config(args.config, {"data_dir": data}).keystore_path()
    return os.path.join(data, "keys.json")


def make_plan(args):
    """Everything decided before anything is touched. Returns a dict (the plan)."""
    board = args.board
    target = P.TARGETS[board]
    if board != "pizero" and not args.port:
        raise UserError("--board %s needs --port (the board's serial port, e.g. /dev/ttyACM0)" % board)
    if board == "pizero" and args.port:
        raise UserError("--board pizero is not flashed over a port: it builds an install bundle for "
                        "the Pi (see --out and docs/FLASHING.md); drop --port")
    link = _link(args, board)
    wifi = V.load_wifi(args.wifi_file) if board == "pico_w" else None
    if wifi is None and args.wifi_file:
        raise UserError("--wifi-file is for pico_w only (the %s board has no Wi-Fi set up by flash)" % board)
    ks_path = keystore_path(args)
    ks = V.open_keystore(ks_path)
    device_id = V.choose_device_id(ks, args.device_id)
    policy = "rotate" if args.rotate_key else ("keep" if args.keep_key else "new")
    key_sentence = V.key_plan(ks, device_id, policy)
    config = {"board": board, "device_id": device_id, "link": link, "key_file": P.KEY_FILE}
    if wifi is not None:
        config["wifi_file"] = P.WIFI_FILE
    extra = _extra(args.set)
    clash = sorted(set(extra) & set(config))
    if clash:
        raise UserError("--set cannot change %s (set by flash itself)" % ", ".join(clash))
    config.update(extra)
    # the firmware's own checks (option parser, the board's limits); the sample rate is written
    # out (the board's default when not --set) so the plan shows what the board will run at
    config["fs"] = P.check_device_flags(config, wifi)
    items = P.plan_items(board, config, wifi=V.wifi_bytes(wifi) if wifi else None,
                         code=not args.config_only)
    return {"board": board, "target": target, "port": args.port, "link": link, "wifi": wifi,
            "keystore": ks, "device_id": device_id, "policy": policy, "key_sentence": key_sentence,
            "config": config, "items": items, "dirs": P.remote_dirs(items),
            "stale_dirs": () if args.config_only else P.STALE_DIRS,
            "reset": not args.no_reset, "out": args.out, "wait": max(0, args.wait)}


def describe(plan, staging_hint="<staging>"):
    """The plan as text lines (no secret in them)."""

    t = plan["target"]
    lines = []
    rt = ("MicroPython, mpy-cross -march=" + P.march_of(plan["board"])
          if t["runtime"] == "micropython" else "CPython + Blinka, .py sources")
    lines.append("board      %s (%s)" % (plan["board"], rt))
    if plan["port"]:
        lines.append("port       %s" % plan["port"])
    lines.append("device id  %d" % plan["device_id"])
    lines.append("link       %s" % plan["link"])
    lines.append("key        %s" % plan["key_sentence"])
    if plan["wifi"]:
        lines.append("wifi       ssid %r from %s (password not shown)" % (plan["wifi"]["ssid"], plan["wifi"]["_origin"]))
    lines.append("config     %s" % json.dumps(plan["config"], sort_keys=True))
    lines.append("")
    lines.append("files (%d):" % len(plan["items"]))
    for it in plan["items"]:
        if it.size is not None:
            size = "%7d B" % it.size
        else:
            size = "  (src %6d B; .mpy size after compile)" % it.source_size
        what = {"mpy": "compiled from " + str(it.source), "py": "copied from " + str(it.source),
                "config": "board config", "main": "starts device/main.py with " + P.CONFIG_FILE,
                "key": "device key (32 bytes, never shown)", "wifi": "Wi-Fi credentials (never shown)"}[it.kind]
        lines.append("  %-34s %s  %s" % (it.remote, size, what))
    known = sum(it.size or it.source_size or 0 for it in plan["items"])
    lines.append("  total about %d bytes (sources; compiled .mpy files are smaller)" % known
                 if any(it.size is None for it in plan["items"]) else "  total %d bytes" % known)
    if plan["board"] == "pizero":
        out = plan["out"] or Z.default_out(plan)
        for name, data, mode in Z.bundle_extras(plan):
            lines.append("  %-34s %7d B  generated (mode %o)" % (name, len(data), mode))
        lines.append("")
        lines.append("bundle: %s/ and %s.tar.gz (mode 0600: it holds the device key)" % (out, out))
        lines.extend(Z.describe_steps(out))
    else:
        lines.append("")
        lines.append("mpremote commands (what the deploy does, over one connection):")
        for c in cli_commands(plan["port"], plan["items"], staging_hint, plan["dirs"],
                              plan["stale_dirs"], plan["reset"]):
            lines.append("  " + c)
    return lines


class _Progress:
    """A bar by bytes on stderr when it is a terminal (host/util/progress.py); otherwise one line per
    file on stdout."""

    def __init__(self, total, console=None):
        self.total = total
        self.bar = console is not None or wants_progress()
        self.last = None
        self._cm = progress_bar("copying", total, enabled=self.bar, console=console, unit="bytes")
        self._update = None

    def __enter__(self):
        self._update = self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)

    def __call__(self, item, done, total):
        if self.bar:
            self._update(done, item.remote, total)
        elif item.remote != self.last:
            self.last = item.remote
            print("  copying %-34s %7d B" % (item.remote, item.size), flush=True)


def run(args):
    if getattr(args, "mip_package", None):
        from becomingone.deploy.mip import write_mip_package
        pkg = write_mip_package(args.board, os.path.abspath(args.mip_package))
        print("wrote %s: %d .mpy files for %s (install: mpremote mip install %s)" % (
            os.path.join(args.mip_package, "package.json"), len(pkg["urls"]), args.board,
            os.path.join(args.mip_package, "package.json")))
        return 0
    plan = make_plan(args)
    if args.dry_run:
        print("becomingone flash: plan (dry run: nothing is compiled or written, no key is "
              "generated, the keystore and the board are not touched)")
        for line in describe(plan):
            print(line)
        return 0
    if plan["board"] == "pizero":
        return build_bundle(plan, args)
    return flash_board(plan)


def flash_board(plan):

    items, board = plan["items"], plan["board"]
    port = plan["port"]
    if not plan["wait"] and port.startswith("/") and not os.path.exists(port):
        # before compiling and printing the whole plan: a board that is not there is the
        # commonest mistake, and it needs no mpy-cross run to find out
        raise UserError("cannot open %s: no such port (is the board plugged in? `mpremote devs` "
                        "lists the ports; --wait S waits S seconds for it to appear)" % port)
    staging = None
    try:
        code = [it for it in items if it.kind == "mpy"]
        if code:
            print("compiling %d modules with mpy-cross -march=%s ..." % (len(code), P.march_of(board)),
                  flush=True)
        key = V.make_key(plan["keystore"], plan["device_id"], plan["policy"])
        for it in items:
            if it.kind == "key":
                it.data = key
        staging = P.build(items, board)
        n = P.check_fits(items, board)
        for line in describe(plan, staging_hint=staging):
            if line.startswith("mpremote commands"):
                break
            print(line)
        print("copying %d files (%d bytes) to %s with mpremote ..." % (len(items), n, plan["port"]), flush=True)
        with _Progress(n) as prog:
            res = deploy(plan["port"], items, plan["dirs"], plan["stale_dirs"], reset=plan["reset"],
                         progress=prog, wait=plan["wait"],
                         before_reset=lambda: V.register_key(plan["keystore"], plan["device_id"], key,
                                                             plan["policy"]))
        for r in res["removed"]:
            print("removed stale %s" % r)
        print("device %d: key %s in %s (fingerprint %s)" % (
            plan["device_id"], "kept" if plan["policy"] == "keep" else "registered",
            plan["keystore"].path, fingerprint(key)))
        print("deployed %d files to %s%s" % (len(res["written"]), plan["port"],
                                             "; board reset" if res["reset"] else "; not reset (--no-reset)"))
        return 0
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
