#!/usr/bin/env bash
# The README's test command: sets up .venv (first run) and runs every test lane.
#   lane 1: pytest on CPython
#   lane 2: shared/ and device/ behaviour tests under the real MicroPython unix port (192K heap)
#   lane 3: every module of device/ and shared/ compiles with mpy-cross -march=armv6m
#   lane 4: the firmware on an emulated RP2040 (rp2040js + MicroPython RPI_PICO, tests/rp2040):
#           beat scenarios, the beat's budget, emulate --runtime rp2040, flash with mpremote;
#           it runs beside lanes 1-3 at the lowest CPU priority (its output follows theirs)
# Extra arguments go to lane 1's pytest (e.g. bash tools/test.sh -k protocol).
# BECOMINGONE_RP2040_FIRMWARE=FILE.uf2 runs lane 4 on another RPI_PICO image (an official
# MicroPython release, host/rp2040/firmware/README.md).
set -u
cd "$(dirname "$0")/.."
. tools/venv.sh
status=0

# lane 4 runs beside lanes 1-3 under nice 19: the emulator is one process that measures in the
# chip's own cycles, so it loses nothing by waiting, and lane 1's real-time end-to-end tests
# (MicroPython devices, a relay, a coordinator) get the CPU first (at equal priority it starved
# them: test_relay_e2e failed on timing in 2 of 3 runs). Its output is kept for after them.
mkdir -p build
l4_log=build/lane4.log
rm -f build/skipped-lane4.txt
(
  if python -c "from becomingone.rp2040 import chip; chip.ensure_installed()"; then
    BECOMINGONE_SKIP_REPORT=build/skipped-lane4.txt nice -n 19 python -m pytest tests/rp2040 -rxX
  else
    echo "lane 4 cannot run: see the message above"
    exit 1
  fi
) > "$l4_log" 2>&1 &
l4_pid=$!
trap 'kill $l4_pid 2>/dev/null' INT TERM

echo "== lane 1: pytest (CPython)"
python -m pytest --durations=25 "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi
[ $rc -ne 0 ] && status=1
cp build/skipped-components.txt build/skipped-lane1.txt 2>/dev/null || : > build/skipped-lane1.txt

echo "== lane 2: MicroPython unix port (-X heapsize=192K; beat scenarios 256K: tests/mpy/harness_heap.py)"
# The beat scenarios load the firmware precompiled for this machine (as a flashed board loads
# .mpy files); every other lane-2 test imports the sources.
fw="$PWD/build/firmware-host"
rm -rf "$fw"
if python -c "import sys; from becomingone.emulate.firmware import build_firmware; build_firmware(sys.argv[1])" "$fw"; then
  export BECOMINGONE_FIRMWARE="$fw"
else
  echo "warning: could not precompile the firmware; the beat scenarios import the sources"
fi
# one process per test file: every file starts from a fresh 192K heap (qstrs are never freed,
# so one process running every file would measure the files before it, not the firmware)
l2_failed=""
for f in tests/mpy/test_*.py; do
  micropython -X heapsize=192K tests/mpy_runner.py "$PWD" "$f" || l2_failed="$l2_failed $f"
done
if [ -n "$l2_failed" ]; then echo "lane 2 failed in:$l2_failed"; status=1; else echo "lane 2: every file passed"; fi

echo "== lane 3: mpy-cross -march=armv6m"
python tools/mpy_check.py || status=1

echo "== lane 4: the firmware on an emulated RP2040 (rp2040js; ran beside lanes 1-3)"
# needs Node.js 18+ and npm (Debian nodejs, npm; .ci/run installs them); rp2040js is installed
# into host/rp2040/emu/node_modules by `npm ci` from its package-lock.json on first use
wait $l4_pid || status=1
cat "$l4_log"
[ -s build/skipped-lane4.txt ] && cat build/skipped-lane4.txt >> build/skipped-lane1.txt

# the real-component test groups pytest skipped here, each with the command that installs what
# it needs (tests/conftest.py writes the list)
if [ -s build/skipped-lane1.txt ]; then
  echo "== real-component tests skipped on this machine"
  cat build/skipped-lane1.txt
else
  echo "== every real-component test group ran (Chromium, Mosquitto, nats-server, bubblewrap, ...)"
fi
if [ $status -eq 0 ]; then echo "ALL LANES PASSED"; else echo "SOME LANES FAILED"; fi
exit $status
