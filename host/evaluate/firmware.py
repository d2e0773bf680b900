"""Run the real firmware (device/main.py, board emulator) on a sensor file or a synthetic
scenario, on a virtual clock, and collect what it sends: HELLO, every TELEMETRY record, the
ACK of a MODEL we gave it, and its closing JSON report.

    fw = Firmware("micropython")          # builds the .mpy firmware once (content-hash cache)
    run = fw.run(sensor_file="x.u16")     # or args=["--signal", "amp=0", "--faults", ...], beats=N
    run.tel["threat"], run.tel["decision_state"], run.tel["level"], ...   numpy arrays per beat
    run.tel["time_us"]                    device time of each record (frame header)
    runs = fw.map([dict(sensor_file=...), ...], jobs=2)                   in parallel

The link is ``serial`` (COBS frames on stdout, the report on stderr); ``model=(bias, w_level,
w_kurt, w_crest, w_anoms)`` is delivered as a MODEL frame on stdin before the first beat (the
device applies it between beats, as from a host; the ACK precedes the first TELEMETRY record,
which ``model_ok`` checks). ``--model seed`` and ``shipped`` are the firmware's own flags.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from becomingone.errors import UserError
from shared import cobs, protocol as P

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOT_ID = 4242
TEL_FIELDS = ("beat", "threat", "decision_state", "level", "kurt", "crest", "anoms",
              "coherence", "n_samples", "o_weight", "pid_error", "lateness_us")
# + "time_us": the device time of the frame that carried the record (header era/off): the beat's
# time even when overloaded beats were skipped (TELEMETRY's beat counts the beats that ran)
TEL_DTYPE = np.dtype([(n, "<i8") for n in TEL_FIELDS + ("time_us",)])
RUNTIMES = ("micropython", "cpython")


class FirmwareError(UserError):
    pass


class DeviceRun:
    """What one firmware process sent."""

    def __init__(self, hello, tel, report, acks, stderr, seconds, returncode, argv):
        self.hello = hello or {}
        self.tel = tel
        self.report = report
        self.acks = acks
        self.stderr = stderr
        self.wall_s = seconds
        self.returncode = returncode
        self.argv = argv

    @property
    def beats(self):
        return int(self.tel.shape[0])

    @property
    def period_s(self):
        return (self.hello.get("period_us") or 4210) / 1e6

    @property
    def decisions(self):
        return self.tel["decision_state"] & P.DECISION_MASK

    def model_ok(self):
        return any(a.get("acked_type") == P.MODEL and a.get("status") == P.ACK_OK
                   for a in self.acks)


def _source_hash(root):
    h = hashlib.sha256()
    for pkg in ("device", "shared", "boards"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith(".py"):
                    p = os.path.join(dirpath, f)
                    h.update(os.path.relpath(p, root).encode())
                    with open(p, "rb") as fh:
                        h.update(fh.read())
    return h.hexdigest()[:16]


def built_firmware(root=ROOT):
    """device/main.py of an mpy-cross build of this tree, cached by the sources' hash (a changed
    device/model_default.py is a new build)."""
    from becomingone.emulate.firmware import build_firmware, host_march
    key = "%s-%s" % (_source_hash(root), host_march() or "none")
    out = os.path.join(tempfile.gettempdir(), "becomingone-fw-%d" % os.getuid(), key)
    main = os.path.join(out, "device", "main.py")
    if not os.path.exists(os.path.join(out, ".complete")):
        tmp = out + ".tmp%d" % os.getpid()
        build_firmware(tmp, root=root)
        try:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            os.rename(tmp, out)
        except OSError:          # another process built it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(out, ".complete"), "w") as f:
            f.write(key)
    return main


def model_frame(model, version=1):
    b, wl, wk, wc, wa = (float(v) for v in model)
    fr = P.encode(P.MODEL, {"model_version": int(version), "bias": b, "w_level": wl,
                            "w_kurt": wk, "w_crest": wc, "w_anoms": wa}, 0, BOOT_ID, 0)
    return b"\x00" + cobs.encode(fr) + b"\x00"


def parse_frames(raw):
    """(hello, telemetry array, acks) from the device's COBS stream."""
    hello, acks, rows = None, [], []
    for seg in raw.split(b"\x00"):
        if not seg:
            continue
        try:
            f = P.decode(cobs.decode(seg))
        except Exception:       # noqa: BLE001 -- a damaged frame is skipped, as the host does
            continue
        if f.type == P.TELEMETRY:
            recs = f.fields["records"] if f.batch else [f.fields]
            for i, r in enumerate(recs):
                # a BATCH frame's time is its last record's; earlier ones are a period apart
                t = f.time_us - (len(recs) - 1 - i) * int(r["period_us"])
                rows.append(tuple(int(r[n]) for n in TEL_FIELDS) + (t,))
        elif f.type == P.HELLO and hello is None:
            hello = f.fields
        elif f.type == P.ACK:
            acks.append(f.fields)
    tel = np.array(rows, dtype=TEL_DTYPE) if rows else np.zeros(0, dtype=TEL_DTYPE)
    return hello, tel, acks


class Firmware:
    def __init__(self, runtime="micropython", root=ROOT):
        if runtime not in RUNTIMES:
            raise UserError("--runtime must be one of %s, got %r" % (", ".join(RUNTIMES), runtime))
        self.runtime = runtime
        self.root = root
        if runtime == "micropython":
            from becomingone.emulate.devices import runtime_command
            self.prefix = runtime_command("micropython")
            self.main = built_firmware(root)
            self.cwd = os.path.dirname(os.path.dirname(self.main))
        else:
            self.prefix = [sys.executable]
            self.main = os.path.join(root, "device", "main.py")
            self.cwd = root

    def argv(self, sensor_file=None, args=(), beats=0, model_flag=None):
        a = self.prefix + [self.main, "--board", "emulator", "--link", "serial",
                           "--clock", "virtual", "--beats", str(int(beats)),
                           "--boot-id", str(BOOT_ID)]
        if sensor_file:
            a += ["--sensor-file", os.path.abspath(sensor_file)]
        if model_flag:
            a += ["--model", model_flag]
        return a + list(args)

    def run(self, sensor_file=None, args=(), beats=0, model=None, model_flag=None,
            timeout=900):
        """One firmware process to the end of the file (beats=0) or for ``beats`` beats."""
        if not sensor_file and not beats:
            raise ValueError("a synthetic run needs beats > 0")
        argv = self.argv(sensor_file, args, beats, model_flag)
        inp = model_frame(model) if model is not None else b""
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.cwd, input=inp, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError("the firmware did not finish within %d s: %s"
                                % (timeout, " ".join(argv))) from None
        dt = time.monotonic() - t0
        hello, tel, acks = parse_frames(p.stdout)
        err = p.stderr.decode("utf-8", "replace")
        report = None
        for line in reversed(err.splitlines()):
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    report = json.loads(line)
                except ValueError:
                    pass
                break
        if p.returncode != 0 or not tel.shape[0]:
            raise FirmwareError("the firmware (%s) failed (exit %s, %d TELEMETRY records): %s"
                                % (self.runtime, p.returncode, tel.shape[0],
                                   err.strip()[-800:] or "(no output)"))
        run = DeviceRun(hello, tel, report, acks, err, dt, p.returncode, argv)
        if model is not None and not run.model_ok():
            raise FirmwareError("the firmware did not acknowledge the MODEL frame %r: %s"
                                % (tuple(model), err.strip()[-400:]))
        return run

    def map(self, jobs_kwargs, jobs=None):
        """run(**kw) for each kw, ``jobs`` processes at a time (default: min(2, CPUs))."""
        n = max(1, int(jobs or min(2, os.cpu_count() or 1)))
        if n == 1 or len(jobs_kwargs) <= 1:
            return [self.run(**kw) for kw in jobs_kwargs]
        with ThreadPoolExecutor(max_workers=n) as ex:
            return list(ex.map(lambda kw: self.run(**kw), jobs_kwargs))
