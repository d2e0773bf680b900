"""`becomingone` command line. Subcommands are registered by name and imported
lazily, so `becomingone --help` stays fast and a broken optional piece cannot
stop the others. Each command module defines `add_arguments(parser)` and
`run(args) -> int`."""
import argparse
import importlib
import os
import sys

from becomingone.errors import (BecomingOneError, LedgerError, LinkError, MemoryStoreError,
                                MeshError, NotRunning, UserError)

# Exit status per layer's exception base, first match wins (docs/HOST.md: every error the host
# raises on purpose is printed as `becomingone: message` and exits 2, never a traceback).
EXIT_CODES = ((UserError, 2), (LinkError, 2), (LedgerError, 2), (MemoryStoreError, 2),
              (MeshError, 2), (NotRunning, 2), (BecomingOneError, 2))


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
}


def _top_help():
    lines = ["usage: becomingone COMMAND [options]", "", "commands:"]
    for name, (_mod, hlp) in COMMANDS.items():
        lines.append("  %-9s %s" % (name, hlp))
    lines.append("")
    lines.append("`becomingone COMMAND --help` for the options of one command.")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
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
    parser = argparse.ArgumentParser(prog="becomingone " + name, description=hlp)
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
