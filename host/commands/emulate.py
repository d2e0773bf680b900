"""`becomingone emulate`: N devices running the real firmware (MicroPython unix port by default)
against a host with embedded defaults, with faults on demand. Ctrl-C stops everything cleanly."""
import json
import os
import signal
import sys

from rich.live import Live

from becomingone.commands.common import add_http_arguments, http_arg, print_warnings
from becomingone.commands.devicetable import device_table, states_of
from becomingone.devices.state import device_state
from becomingone.emulate.faults import ALLOWED, parse_faults
from becomingone.emulate.runner import Emulation, write_summary
from becomingone.errors import UserError
from becomingone.http import parse_address


def add_arguments(p):
    p.add_argument("--devices", type=int, default=3, help="number of emulated devices (default 3)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds to run (default 60; 0 = until Ctrl-C)")
    p.add_argument("--transport", default="udp", choices=("udp", "serial"),
                   help="device links: UDP datagrams or a pseudo-terminal serial pair per device")
    p.add_argument("--serial-devices", type=int, default=0,
                   help="with --transport udp: the last K devices use a serial pty instead")
    p.add_argument("--runtime", default="micropython", choices=("micropython", "cpython", "rp2040"),
                   help="runtime of the device processes (default: the MicroPython unix port); "
                   "rp2040: emulated Picos running the real MicroPython RPI_PICO firmware with "
                   "the flashed firmware, on their USB serial port (implies serial links; their "
                   "clock is emulated time, slower than the wall clock: docs/DEVICE.md "
                   "\"On the chip\")")
    p.add_argument("--faults", default="",
                   help="comma-separated faults, names: " + ", ".join(ALLOWED)
                   + " (e.g. loss=0.05,dup=0.01,reorder=0.01,reboot=2@10,fault=3@5; fault=D@T turns "
                   "device D's sensor into an impacting machine at T s: an odd, coherent device goes "
                   "ALERT then QUARANTINE, an even, noisy one ALERT; D must be 1..--devices)")
    p.add_argument("--data", default=None, help="data folder (default: var/emulate)")
    p.add_argument("--pow-bits", type=int, default=None, help="proof-of-work bits of the devices")
    p.add_argument("--omega", type=float, default=0.0,
                   help="KAIROS omega in rad/s for host and devices (default 0: at the spec's 2 "
                   "rad/s no window longer than 0.39 s can reach the collapse threshold)")
    p.add_argument("--tau-bar", type=float, default=0.0,
                   help="KAIROS lag tau-bar in seconds (default 0: each device learns one period "
                        "of its machine)")
    p.add_argument("--sensor-file", default=None, metavar="PATH",
                   help="every device samples this file (raw little-endian uint16 ADC counts at "
                   "the board's f_s, 12 kHz) instead of its synthetic machine; a device restarts "
                   "(new boot) when the file ends. `becomingone replay` makes one from a "
                   "recording (npy, CSV, WAV) and runs it once")
    p.add_argument("--device-arg", action="append", default=[], metavar="FLAG=VALUE",
                   help="an extra device/main.py flag for every device, e.g. --device-arg "
                   "pulse-k=1.0714 --device-arg pulse-p=1 (repeatable)")
    p.add_argument("--summary-json", default=None, help="write the summary JSON here")
    p.add_argument("--no-live", action="store_true", help="no live table (plain progress lines)")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", default=None,
                   help="also bridge the devices to this MQTT broker with Home Assistant discovery "
                   "(integrations.mqtt, docs/MQTT.md; anonymous, states every 1 s)")
    add_http_arguments(p)


def _live_table(emu):
    st = emu.status()
    states = {x["device_id"]: x for x in states_of(st.get("sessions") or {})}
    # every emulated device gets a row, seen or not yet
    rows = [states.get(dev.device_id) or device_state({"device_id": dev.device_id})
            for dev in emu.devices]
    w = st.get("witness", {})
    rej = st.get("frames_rejected") or {}
    return device_table(
        rows, title="BecomingONE emulation  t=%.0fs  data: %s" % (emu.elapsed(), emu.data_dir),
        caption="frames received %s, accepted %s, %s rejected %d%s; witness committed %s/%s; "
                "ledger %s" % (st.get("frames_received"), st.get("frames_accepted"),
                               _awaiting(st), sum(rej.values()), " (%s)" % ", ".join(
                                   "%s %d" % kv for kv in sorted(rej.items())) if rej else "",
                               w.get("committed"), w.get("received"),
                               (st.get("ledger") or {}).get("size")))


def _awaiting(st):
    """The frames devices sent before their session handshake completed: not rejections (a
    device beats before its CHALLENGE comes back; docs/HOST.md "Sessions")."""
    n = st.get("frames_awaiting_handshake") or 0
    return "before handshake %d," % n if n else ""


def _mqtt_overrides(spec):
    """--mqtt HOST[:PORT] -> integrations.mqtt config overrides (None without --mqtt)."""
    if not spec:
        return None
    host, sep, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
    if not sep:
        host, port = spec, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError("--mqtt %r: expected HOST or HOST:PORT with PORT in 1..65535" % spec)
    return {"integrations.mqtt.enabled": True, "integrations.mqtt.host": host,
            "integrations.mqtt.port": int(port), "integrations.mqtt.interval": 1.0}


def _device_args(items):
    """--device-arg FLAG=VALUE items -> device/main.py flags (["--flag", "value", ...])."""
    out = []
    for it in items:
        k, sep, v = it.partition("=")
        if not k or k.startswith("-") or not sep:
            raise UserError("--device-arg %r: expected FLAG=VALUE, the flag without its dashes "
                            "(e.g. pulse-p=1)" % it)
        out += ["--" + k, v]
    return out


def run(args):
    faults = parse_faults(args.faults)
    if args.duration < 0:
        raise UserError("--duration must be >= 0 (0 = until Ctrl-C)")
    if getattr(args, "http", None):
        parse_address(args.http)          # a typo fails here, before the data folder is emptied
    emu = Emulation(devices=args.devices, duration=args.duration or None,
                    transport=args.transport, runtime=args.runtime, faults=faults,
                    data_dir=args.data, serial_devices=args.serial_devices,
                    pow_bits=args.pow_bits, omega=args.omega, tau_bar=args.tau_bar,
                    device_args=_device_args(args.device_arg),
                    http=http_arg(args), config_overrides=_mqtt_overrides(args.mqtt),
                    sensor_file=args.sensor_file)
    print_warnings(emu.cfg)
    print("emulating %d device(s) on %s over %s for %s; host data in %s; device logs in %s"
          % (args.devices, args.runtime, "serial" if args.runtime == "rp2040" else args.transport,
             ("%gs" % args.duration) if args.duration else "ever (Ctrl-C stops)",
             emu.data_dir, os.path.join(emu.data_dir, "logs")))
    sys.stdout.flush()
    live = None
    live_ctx = None
    if not args.no_live and sys.stdout.isatty():
        live_ctx = Live(refresh_per_second=2, transient=False)

        def live(e):
            live_ctx.update(_live_table(e))
    else:
        state = {"next": 0.0}

        def live(e):
            if e.elapsed() >= state["next"]:
                st = e.status()
                print("t=%4.0fs devices=%s frames=%s before_handshake=%s rejected=%s witness=%s "
                      "ledger=%s" % (
                    e.elapsed(), st.get("devices_seen"), st.get("frames_received"),
                    st.get("frames_awaiting_handshake") or 0,
                    sum((st.get("frames_rejected") or {}).values()),
                    (st.get("witness") or {}).get("committed"),
                    (st.get("ledger") or {}).get("size")))
                sys.stdout.flush()
                state["next"] += 5.0

    def _stop(signum, frame):          # Ctrl-C, SIGTERM, SIGHUP: stop devices, then the host
        emu.stop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        emu.start()
        if emu.cell.http is not None:
            _say("becomingone: dashboard %s" % emu.cell.http.url)
        if live_ctx is not None:
            with live_ctx:
                emu.wait(live=live)
        else:
            emu.wait(live=live)
    except KeyboardInterrupt:
        pass
    finally:
        # every exit path reaps the device processes: an exception, a closed pipe (`| head`:
        # the next print raises BrokenPipeError), a signal
        _say("stopping: devices, then the host (flushing the ledger)...")
        emu.shutdown()
    summary = emu.summary()
    path = args.summary_json or os.path.join(emu.data_dir, "summary.json")
    write_summary(summary, path)
    short = {k: summary[k] for k in (
        "runtime", "devices_seen", "frames_sent", "frames_received", "frames_rejected",
        "frames_awaiting_handshake", "lateness_us", "collapses", "decisions", "witness_sent", "witness_in_ledger",
        "ledger_entries", "ledger_verified")}
    print(json.dumps(short, indent=1, sort_keys=True))
    exe = sys.argv[0] if sys.argv else ""
    cmd = _under_cwd(exe) if os.path.basename(exe) == "becomingone" else None
    cmd = cmd if cmd and os.sep in cmd else "becomingone"
    data = _under_cwd(emu.data_dir) or emu.data_dir
    print("summary: %s\ninspect: %s ledger verify --data %s\n         %s ledger show --data %s\n"
          "         %s memory query --data %s" % (_under_cwd(path) or path, cmd, data, cmd, data,
                                                  cmd, data))
    return 0 if summary["ledger_verified"] else 1


def _say(text):
    """Print a progress line; a closed stdout (`| head`) must not stop the shutdown."""
    try:
        print(text)
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass


def _under_cwd(path):
    """`path` relative to the working directory when it lies under it, else None: the hint
    lines must work in the user's shell, where tools/run.sh's .venv/bin is not on PATH."""
    rel = os.path.relpath(os.path.abspath(path))
    return None if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel
