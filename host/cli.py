"""`becomingone` command line. Subcommands are registered by name and imported
lazily, so `becomingone --help` stays fast and a broken optional piece cannot
stop the others. Each command module defines `add_arguments(parser)` and
`run(args) -> int`."""
import argparse
import importlib
import os
import sys

from becomingone.errors import (BecomingOneError, LedgerError, LinkError, MemoryStoreError,
                                MeshError, NotRunning, RelayError, UserError)

# Exit status per layer's exception base, first match wins (docs/HOST.md: every error the host
# raises on purpose is printed as `becomingone: message` and exits 2, never a traceback).
EXIT_CODES = ((UserError, 2), (LinkError, 2), (LedgerError, 2), (MemoryStoreError, 2),
              (MeshError, 2), (RelayError, 2), (NotRunning, 2), (BecomingOneError, 2))


def exit_code(err):
    """The exit status for an error the host raised on purpose."""
    return next(code for cls, code in EXIT_CODES if isinstance(err, cls))

# name -> (module, one-line help)
COMMANDS = {
    "run": ("becomingone.commands.run", "run the coordinator (links, Master, ledger)"),
    "status": ("becomingone.commands.status", "show the state of a coordinator's data folder"),
    "emulate": ("becomingone.commands.emulate", "run N emulated devices (real firmware) against a host"),
    "ledger": ("becomingone.commands.ledger", "verify, show, export, prove and checkpoint the ledger"),
    "memory": ("becomingone.commands.memory", "query temporal signatures (range, reconstruct, similar)"),
    "device": ("becomingone.commands.device", "list devices, change config (undo/redo/goto), clear, push model"),
    "flash": ("becomingone.commands.flash", "compile and deploy the firmware to a board with mpremote"),
    "bench": ("becomingone.commands.bench", "benchmarks: protocol, device, ledger, ingest, mesh, cell, master, http, mqtt"),
    "mesh": ("becomingone.commands.mesh", "mesh: consensus simulation, erasure-coded ledger archives, CA"),
    "model": ("becomingone.commands.model", "entropy model: train on labelled history, show, push to devices"),
    "plot": ("becomingone.commands.plot", "PNG charts of a device: coherence, PID response, lateness"),
    "replay": ("becomingone.commands.replay", "stream a recording (npy, CSV, WAV) into the real firmware, host receiving"),
    "evaluate": ("becomingone.commands.evaluate", "a dataset of recordings through the firmware: detection, false alarms, AUC vs baselines"),
    "scenarios": ("becomingone.commands.scenarios", "the decision table: the firmware through healthy, noise and fault scenarios"),
    "witness": ("becomingone.commands.witness", "a standalone witness that cosigns ledger checkpoints (C2SP tlog-witness)"),
    "relay": ("becomingone.commands.relay", "forward local devices' frames to a remote coordinator (a relay node)"),
}


# name -> examples shown at the end of `becomingone NAME --help` (one per action at least)
EXAMPLES = {
    "run": ["becomingone run --link udp://0.0.0.0:5005 --link /dev/ttyACM0 --data var/cell",
            "becomingone run --config /etc/becomingone/becomingone.yaml --http 127.0.0.1:0"],
    "relay": ["becomingone relay --link /dev/ttyACM0 --link /dev/ttyACM1 --to udp://10.0.0.5:18790",
              "becomingone relay --link udp://0.0.0.0:18790 --to udp://coordinator.lan:18790 "
              "--buffer 50000 --status-file /run/becomingone-relay.json",
              "becomingone relay --link /dev/ttyACM0 --to udp://10.0.0.5:18790 --json "
              "--status-every 5"],
    "status": ["becomingone status --data var/cell",
               "becomingone status --data var/cell --verify --json"],
    "emulate": ["becomingone emulate --devices 3 --duration 60",
                "becomingone emulate --devices 3 --faults fault=3@5,loss=0.05 --mqtt 127.0.0.1:1883"],
    "witness": ["becomingone witness init --data var/witness --name witness.example.org/w1",
                "becomingone witness trust --data var/witness --ledger-data var/cell",
                "becomingone witness serve --data var/witness --listen 0.0.0.0:7380",
                "becomingone witness show --data var/witness --origin becomingone.ledger/0123456789abcdef"],
    "ledger": ["becomingone ledger verify --data var/cell",
               "becomingone ledger verify --data var/cell --against saved-checkpoint.txt",
               "becomingone ledger show --data var/cell --from 100 --kind witness",
               "becomingone ledger proof --data var/cell 42",
               "becomingone ledger export --data var/cell export/",
               "becomingone ledger checkpoint --data var/cell --show"],
    "memory": ["becomingone memory query --data var/cell --table telemetry --device 3 --since=-10m",
               "becomingone memory reconstruct --data var/cell --device 3 --at=-1h",
               "becomingone memory similar --data var/cell --device 3"],
    "device": ["becomingone device list --data var/cell",
               "becomingone device clear 3 --data var/cell",
               "becomingone device config 3 telemetry_every=4 --data var/cell",
               "becomingone device undo 3 --data var/cell",
               "becomingone device pow 3 18 --data var/cell",
               "becomingone device keys add 7 --data var/cell"],
    "flash": ["becomingone flash --board pico --port /dev/ttyACM0 --dry-run",
              "becomingone flash --board pico_w --port /dev/ttyACM0 --host-url udp://192.168.1.10:18790",
              "becomingone flash --board pico --mip-package dist/mip-pico"],
    "bench": ["becomingone bench http", "becomingone bench ingest --quick --json"],
    "mesh": ["becomingone mesh simulate --nodes 1000 --algo pushsum",
             "becomingone mesh init --dir ~/mesh-ca --cells lab-a,lab-b",
             "becomingone mesh seal --db var/cell/ledger.sqlite --k 3 --n 5 --cells a,b,c,d,e --out shards/",
             "becomingone mesh restore --from shards/a shards/c shards/e --k 3 --to restored.sqlite"],
    "model": ["becomingone model train --data var/cell --labels labels.csv",
              "becomingone model show --data var/cell",
              "becomingone model push --data var/cell --device 3"],
    "evaluate": ["becomingone evaluate ../shared/data/cwru",
                 "becomingone evaluate ../shared/data/cwru --records 97,105 --model seed --json"],
    "replay": ["becomingone replay recording.npy --rate 12000",
               "becomingone replay run.csv --column 1 --rate 12000 --scale 0.01 --transport serial"],
    "scenarios": ["becomingone scenarios --beats 2000",
                  "becomingone scenarios --only healthy,impact,stuck --json"],
    "plot": ["becomingone plot --data var/cell --device 3 --last 10m --out plots",
             "becomingone plot --data var/cell --device 3 --kind pid --since 2025-01-01T12:00"],
}


def _top_help():
    lines = ["usage: becomingone COMMAND [options]", "", "commands:"]
    for name, (_mod, hlp) in COMMANDS.items():
        lines.append("  %-9s %s" % (name, hlp))
    lines.append("")
    lines.append("`becomingone COMMAND --help` for the options of one command, with examples;")
    lines.append("`becomingone --version` for the version.")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        import becomingone
        print("becomingone %s" % becomingone.__version__)
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        try:
            print(_top_help())
        except BrokenPipeError:
            return _closed_stdout()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print("becomingone: unknown command %r (allowed: %s)" % (name, ", ".join(COMMANDS)), file=sys.stderr)
        return 2
    modname, hlp = COMMANDS[name]
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name and (e.name == modname or modname.startswith(e.name + ".")):
            print("becomingone: command %r is not available in this build" % name, file=sys.stderr)
            return 2
        raise
    ex = EXAMPLES.get(name)
    parser = argparse.ArgumentParser(
        prog="becomingone " + name, description=hlp,
        epilog=("examples:\n" + "\n".join("  " + x for x in ex)) if ex else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mod.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(mod.run(args) or 0)
    except BecomingOneError as e:
        print("becomingone: %s" % e, file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_stdout()
    except OSError as e:
        if not e.filename:
            raise
        # a folder or file named on the command line (or in the config) that cannot be
        # created, read or written: --data /read-only/place, --out, --summary-json, ...
        print("becomingone: cannot use %s: %s" % (e.filename, e.strerror or e), file=sys.stderr)
        return 2


def _closed_stdout():
    # `becomingone ledger show | head`: the reader went away; no traceback, and point stdout
    # at /dev/null so the interpreter's final flush cannot fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
