#!/usr/bin/env bash
# The README's main-job command: sets up .venv (first run), then runs the emulation:
# emulated devices running the real firmware under the MicroPython unix port, plus the host,
# with the embedded defaults. Stops after --duration seconds or on Ctrl-C.
# Extra arguments go to `becomingone emulate` (e.g. bash tools/run.sh --devices 5 --duration 120).
set -u
cd "$(dirname "$0")/.."
. tools/venv.sh
if [ $# -eq 0 ]; then set -- --devices 3 --duration 60; fi
exec becomingone emulate "$@"
