"""`becomingone replay FILE --rate HZ [--scale G_PER_UNIT]`: a recorded vibration signal (npy,
CSV or WAV) streamed into the real firmware in place of its sensor, with the host coordinator
receiving as usual (one emulated device, `becomingone emulate --sensor-file`): the recording is
checked, resampled to the board's f_s with an anti-alias filter when it must be decimated, and
converted to the board's ADC counts (host/evaluate/recording.py); the firmware samples it in
real time and stops at its end; then the coordinator is stopped and the run summarised (the
device's decisions, first ALERT / QUARANTINE, what the host received, the ledger verified).

A bad recording stops here with its error before any coordinator starts: nothing is written to
a ledger (or anywhere)."""
import json
import os
import sys
import time

from becomingone.errors import UserError


def add_arguments(p):
    p.add_argument("file", metavar="FILE", help="recording: .npy, .csv (or .txt) or .wav")
    p.add_argument("--rate", type=float, default=None,
                   help="sample rate of the recording in Hz (npy and CSV; a WAV file has its own)")
    p.add_argument("--scale", type=float, default=None,
                   help="g per count for integer samples (required for them); for float samples "
                        "a factor to g (default: the values are g)")
    p.add_argument("--column", type=int, default=None,
                   help="channel / column of a multi-channel file (0-based)")
    p.add_argument("--runtime", default="micropython", choices=("micropython", "cpython"),
                   help="firmware runtime (default: the MicroPython unix port)")
    p.add_argument("--data", default=None, help="host data folder (default var/replay; emptied "
                   "first, never a real coordinator's)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--transport", default="udp", choices=("udp", "serial"),
                   help="device link: UDP or a serial pty (default udp)")
    from becomingone.commands.run import add_http_arguments
    add_http_arguments(p)


def prepare(args):
    """Load, check and convert the recording; (Recording, BoardSignal). Raises on bad input."""
    from becomingone.evaluate.recording import load_recording, to_board
    from becomingone.evaluate.run import board_constants
    rec = load_recording(args.file, rate=args.rate, scale=args.scale, column=args.column)
    f_s, cpu, bits = board_constants()
    return rec, to_board(rec, f_s, cpu, bits)


def run(args):
    from becomingone.commands.run import http_arg
    from becomingone.emulate.runner import Emulation, write_summary
    from becomingone.evaluate.recording import write_counts
    rec, sig = prepare(args)               # every check before anything starts or is written
    if getattr(args, "http", None):
        from becomingone.http import parse_address
        parse_address(args.http)
    data = os.path.abspath(args.data or os.path.join("var", "replay"))
    http = http_arg(args)
    emu = Emulation(devices=1, duration=None, transport=args.transport, runtime=args.runtime,
                    data_dir=data, http=False if http is None else http,
                    device_args=["--lag", "0"])
    emu._fresh_data_dir()
    path = write_counts(os.path.join(data, "replay.u16"), sig.counts)
    emu.sensor_file = path
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say("replaying %s: %s" % (args.file, sig.note))
    if sig.clipped:
        say("warning: %d of %d samples (%.3f %%) clipped at the ADC's range (+-%g g)"
            % (sig.clipped, sig.counts.shape[0], 100.0 * sig.clipped / sig.counts.shape[0],
               2048 / 128.0))
    say("%.2f s of samples into the firmware (%s) in real time; host data in %s"
        % (sig.seconds, args.runtime, data))
    emu.start()
    dev = emu.devices[0]
    limit = time.monotonic() + sig.seconds + 60.0
    try:
        while dev.alive() and time.monotonic() < limit:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        emu.shutdown()
    s = emu.summary()
    reports = s.get("device_reports") or []
    rep = reports[-1] if reports else {}
    out = {
        "recording": rec.describe(), "board": sig.describe(), "runtime": args.runtime,
        "data_dir": data,
        "device": {k: rep.get(k) for k in ("beats", "decisions", "collapses", "quarantined",
                                            "lateness_us", "heap_free")},
        "host": {k: s.get(k) for k in ("devices_seen", "frames_sent", "frames_received",
                                        "frames_accepted", "frames_rejected", "witness_sent",
                                        "witness_in_ledger", "ledger_entries",
                                        "ledger_verified")},
    }
    out["host"].update(_telemetry_facts(emu))
    write_summary(s, os.path.join(data, "summary.json"))
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        d = out["device"]
        print("device: %s beats, decisions %s, collapses %s, quarantined %s" % (
            d["beats"], json.dumps(d["decisions"], sort_keys=True), d["collapses"],
            d["quarantined"]))
        h = out["host"]
        print("host: %s frames received, %s accepted, rejected %s; %s telemetry rows in memory, "
              "first ALERT %s s, first QUARANTINE %s s (device time); witness %s/%s in the "
              "ledger, verified %s" % (
                  h["frames_received"], h["frames_accepted"], json.dumps(h["frames_rejected"]),
                  h["telemetry_rows"], h["first_alert_s"], h["first_quarantine_s"],
                  h["witness_in_ledger"], h["witness_sent"], h["ledger_verified"]))
        print("summary: %s" % os.path.join(data, "summary.json"))
    if not rep and not args.json:
        print("note: the device left no closing report (see %s)" % dev.log_path)
    return 0 if s.get("ledger_verified") and s.get("frames_received") else 1


def _telemetry_facts(emu):
    """What the coordinator stored: telemetry rows in memory and the first ALERT / QUARANTINE
    beat among them (beat x period = seconds of the recording)."""
    import sqlite3
    path = emu.cfg.memory_path()
    out = {"telemetry_rows": 0, "first_alert_s": None, "first_quarantine_s": None}
    if not os.path.exists(path):
        return out
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        rows = con.execute("SELECT beat, decision FROM telemetry ORDER BY t").fetchall()
    except sqlite3.DatabaseError:
        rows = []
    finally:
        con.close()
    out["telemetry_rows"] = len(rows)
    period = 0.0042105
    for beat, dec in rows:
        if dec is not None and dec >= 3 and out["first_alert_s"] is None:
            out["first_alert_s"] = round(beat * period, 2)
        if dec == 4 and out["first_quarantine_s"] is None:
            out["first_quarantine_s"] = round(beat * period, 2)
    return out
