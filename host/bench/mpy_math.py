"""Micro-benchmarks of the device maths, runnable on both runtimes; prints ONE JSON line.

    micropython -X heapsize=192K host/bench/mpy_math.py [--simple-pid-path DIR] [--quick]
    python host/bench/mpy_math.py [--simple-pid-path DIR] [--quick]

--simple-pid-path: the directory that holds the PyPI `simple_pid` package (a CPython venv's
site-packages); simple_pid is pure Python and runs under MicroPython when called with dt=
(host/bench/device.py finds the directory and passes it).

Rows (name + figures), all measured in this one process:
  pid            step_us (device/pid.py PID.update, Q16), alloc_bytes_per_step, speedup_vs_simple_pid
  simple-pid     step_us (simple_pid.PID.__call__(x, dt=...)), alloc_bytes_per_step
  pow            hashes_per_s (shared/pow.py Miner.step on a 48-byte record), ratio_vs_bare
  sha256-bare    hashes_per_s (hashlib.sha256(buf).digest() on the same 52 bytes)
  kairos-sample  us (Emissary.add), alloc_bytes
  kairos-beat    us (Emissary.end_beat with a full 1 s window), alloc_bytes
  arbiter-beat   us (Arbiter.step + recalibrate), alloc_bytes
From CPython: collect_micropython(quick=False) runs this script under the unix port and returns
the rows (for host/bench/device.py).
Timing: best of `repeat` runs of `n` calls (ticks_us on MicroPython, perf_counter on CPython).
"""
import sys
import gc
import json

try:
    import time
    _now = time.ticks_us
    _diff = time.ticks_diff
except AttributeError:
    import time

    def _now():
        return int(time.perf_counter() * 1e6)

    def _diff(a, b):
        return a - b

MPY = sys.implementation.name == "micropython"


def _root():
    # ROOT/host/bench/mpy_math.py (a checkout) or ROOT/becomingone/bench/mpy_math.py (a wheel):
    # ROOT holds device/ and shared/
    script = sys.argv[0] if sys.argv and sys.argv[0] else "host/bench/mpy_math.py"
    parts = script.split("/")[:-3]
    return "/".join(parts) if parts else "."


def _alloc():
    try:
        return gc.mem_alloc()
    except AttributeError:
        return 0


def _best(fn, n, repeat):
    best = None
    for _ in range(repeat):
        gc.collect()
        t0 = _now()
        fn(n)
        dt = _diff(_now(), t0)
        if best is None or dt < best:
            best = dt
    return best if best > 0 else 1


def _alloc_per(fn, n):
    if not MPY:
        return None
    n = min(n, 200)           # gc is off while measuring: keep the garbage small
    gc.collect()
    gc.disable()
    try:
        a0 = _alloc()
        fn(0)                 # the harness itself (bound-method locals) allocates a little
        a1 = _alloc()
        fn(n)
        a2 = _alloc()
    finally:
        gc.enable()
    return ((a2 - a1) - (a1 - a0)) / n


def _interleaved(fns, n, repeat):
    # best time of each function over `repeat` rounds, the functions alternating within a round
    # so that both see the same machine load (the benchmark host is shared)
    best = [None] * len(fns)
    for _ in range(repeat):
        for j in range(len(fns)):
            gc.collect()
            t0 = _now()
            fns[j](n)
            dt = _diff(_now(), t0) or 1
            if best[j] is None or dt < best[j]:
                best[j] = dt
    return best


def bench_pid(n, repeat, simple_pid_path):
    from device.pid import PID
    p = PID(0.6, 0.1, 0.05, setpoint=0.5, sample_time=0.004, output_limits=(0.0, 1.0))
    meas = [(i * 2654435761) % 65536 for i in range(64)]

    def ours(k):
        upd = p.update
        m = meas
        for i in range(k):
            upd(m[i & 63])

    ours(100)
    theirs = None
    err = None
    if simple_pid_path:
        if simple_pid_path not in sys.path:
            sys.path.append(simple_pid_path)
        try:
            from simple_pid import PID as SPID
        except ImportError as e:
            err = "import failed: %s" % (e,)
        else:
            sp = SPID(0.6, 0.1, 0.05, setpoint=0.5, sample_time=None, output_limits=(0.0, 1.0))
            fmeas = [m / 65536.0 for m in meas]

            def theirs(k):
                f = fmeas
                for i in range(k):
                    sp(f[i & 63], dt=0.004)

            theirs(100)
    fns = [ours] if theirs is None else [ours, theirs]
    best = _interleaved(fns, n, repeat)
    rows = [{"name": "pid", "step_us": best[0] / n, "alloc_bytes_per_step": _alloc_per(ours, n)}]
    if theirs is not None:
        rows.append({"name": "simple-pid", "step_us": best[1] / n,
                     "alloc_bytes_per_step": _alloc_per(theirs, n)})
        rows[0]["speedup_vs_simple_pid"] = best[1] / best[0]
    elif err:
        rows.append({"name": "simple-pid", "error": err})
    return rows


def bench_pow(n, repeat):
    import hashlib
    from shared.pow import Miner
    rec = bytes(range(48))
    m = Miner()

    def mine(k):
        m.start(rec, 32)              # 32 bits: practically never found, so every hash is work
        m.step(k)

    buf = bytearray(52)
    buf[0:48] = rec
    sha = hashlib.sha256

    def bare(k):
        for _ in range(k):
            sha(buf).digest()

    mine(100)
    bare(100)
    tb, tm = _interleaved([bare, mine], n, repeat)
    hb = n * 1e6 / tb
    hm = n * 1e6 / tm
    return [{"name": "pow", "hashes_per_s": hm, "ratio_vs_bare": hm / hb, "record_bytes": 48},
            {"name": "sha256-bare", "hashes_per_s": hb, "record_bytes": 52}]


def bench_kairos(n, repeat):
    from shared.kairos import Emissary
    from device.arbiter import Arbiter
    em = Emissary(f_s=1000, omega=2.0, tau_bar=0.01, max_samples_per_beat=32)
    xs = [(2048 + ((i * 2654435761) >> 7) % 801 - 400) for i in range(256)]

    def samples(k):
        add = em.add
        end = em.end_beat
        x = xs
        for i in range(k):
            add(x[i & 255])
            if i & 3 == 3:
                end()

    samples(2000)                     # fill the window (1000 samples = 250 beats)
    t_mixed = _best(samples, n, repeat)

    def beats(k):
        end = em.end_beat
        add = em.add
        x = xs
        for i in range(k):
            add(x[i & 255])
            end()

    t_beat_plus_one = _best(beats, n // 4, repeat)

    def only_add(k):
        add = em.add
        end = em.end_beat
        x = xs
        for i in range(k):
            if not add(x[i & 255]):
                end()
                add(x[i & 255])

    t_add = _best(only_add, n, repeat)
    per_add = t_add / n
    per_beat = t_beat_plus_one / (n // 4) - per_add
    a = Arbiter()

    def arb(k):
        st = a.step
        rc = a.recalibrate
        for i in range(k):
            st(i & 15, 1000)
            rc(-1035)

    arb(100)
    t_arb = _best(arb, n // 4, repeat)
    return [{"name": "kairos-sample", "us": per_add, "alloc_bytes": _alloc_per(only_add, n)},
            {"name": "kairos-beat", "us": per_beat, "alloc_bytes": _alloc_per(beats, n // 4),
             "mixed_us_per_sample_4_per_beat": t_mixed / n},
            {"name": "arbiter-beat", "us": t_arb / (n // 4), "alloc_bytes": _alloc_per(arb, n // 4)}]


def collect_micropython(quick=False, micropython=None, heap="192K", timeout=300):
    """CPython side (host/bench/device.py): run this script under the MicroPython unix port with
    simple_pid's directory on its path and return its rows (each tagged runtime=micropython)."""
    # this file also runs under MicroPython, which has none of these: imported where CPython runs
    import importlib.util
    import os
    import shutil
    import subprocess
    from becomingone.deploy.sources import FIRMWARE_ROOT as root
    here = os.path.dirname(os.path.abspath(__file__))
    exe = micropython or shutil.which("micropython") or os.path.join(
        os.path.dirname(sys.executable), "micropython")
    cmd = [exe, "-X", "heapsize=" + heap, os.path.join(here, "mpy_math.py"),
           "--root", root]
    spec = importlib.util.find_spec("simple_pid")
    if spec is not None and spec.origin:
        cmd += ["--simple-pid-path", os.path.dirname(os.path.dirname(spec.origin))]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError("micropython bench failed (%d): %s" % (out.returncode,
                                                                 out.stderr.strip()[-500:]))
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    rows = json.loads(line)["rows"]
    for r in rows:
        r["runtime"] = "micropython"
    return rows


def main(argv):
    quick = "--quick" in argv
    spp = None
    if "--simple-pid-path" in argv:
        spp = argv[argv.index("--simple-pid-path") + 1]
    root = _root()
    if "--root" in argv:
        root = argv[argv.index("--root") + 1]
    if root not in sys.path:
        sys.path.insert(0, root)
    n = 2000 if quick else 20000
    repeat = 2 if quick else 5
    rows = []
    rows += bench_pid(n, repeat + 2, spp)
    rows += bench_pow(n * 2 if not quick else n, repeat + 2)
    rows += bench_kairos(n, repeat)
    print(json.dumps({"runtime": sys.implementation.name, "quick": quick, "rows": rows}))


if __name__ == "__main__":
    main(sys.argv[1:])
