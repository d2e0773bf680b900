"""`becomingone bench protocol [--json]`: our telemetry frame against MAVLink 2 (pymavlink,
unsigned and signed), JSON and CBOR, carrying the same content.

Rows: becomingone (per-frame decode), becomingone-auth (HMAC tag), becomingone-batch (numpy batch
decode of single-beat frames; extra columns for BATCH frames of 5 beats), mavlink2,
mavlink2-signed, json, cbor. Columns: bytes of one telemetry frame (one beat),
encode_per_s, decode_per_s; our rows also mpy_encode_per_s and mpy_alloc_bytes (per encode),
measured by running a script under the `micropython` command (-X heapsize=192K).

The MAVLink dialect is written at bench time into a temp dir and compiled with pymavlink's
mavgen: one message with the same content as our frame, including what our header carries
(boot id, 64-bit device time), in idiomatic MAVLink types (uint64 time_usec, float for the
Q16/Q15 fractions, a uint8 decision enum plus a uint8 flags bitmask). Device id and sequence
ride in MAVLink's own header (sysid/compid, 8-bit seq), which is narrower than ours.
"""
import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from becomingone.deploy.sources import FIRMWARE_ROOT
from becomingone.wire.telemetry import decode_telemetry_batch
from shared import protocol as P
from shared.auth import Auth
from shared.frame_encoder import Encoder

# One representative beat (steady state: NOOP, no flags).
BEAT = {"beat": 123456, "period_us": 4211, "lateness_us": 37, "dT_re": -1234567,
        "dT_im": 7654321, "dE0": 29000000, "dEL": 28000000, "n_samples": 4,
        "coherence": 62259, "pid_error": -517, "pid_output": 39321, "threat": 3277,
        "o_weight": 22938, "decision_state": 0x08, "level": -120, "kurt": 420, "crest": 811,
        "anoms": 2}
HEADER = {"device_id": 17, "boot_id": 0x2A5C, "seq": 123456, "time_era": 0,
          "time_off": 519873216}
KEY = bytes(range(0xA0, 0xC0))

MAV_XML = """<?xml version="1.0"?>
<mavlink>
  <version>3</version>
  <dialect>0</dialect>
  <messages>
    <message id="42000" name="BECOMINGONE_TELEMETRY">
      <description>One beat of BecomingONE telemetry (benchmark peer).</description>
      <field type="uint64_t" name="time_usec" units="us">Device time since boot</field>
      <field type="uint16_t" name="boot_id">Random id, new each boot</field>
      <field type="uint32_t" name="beat">Beat index since boot</field>
      <field type="uint32_t" name="period_us" units="us">Beat period</field>
      <field type="uint16_t" name="lateness_us" units="us">Beat lateness (saturating)</field>
      <field type="int32_t" name="dT_re">KAIROS partial, real part (counts^2)</field>
      <field type="int32_t" name="dT_im">KAIROS partial, imaginary part (counts^2)</field>
      <field type="uint32_t" name="dE0">KAIROS energy partial (counts^2)</field>
      <field type="uint32_t" name="dEL">KAIROS lagged energy partial (counts^2)</field>
      <field type="uint16_t" name="n_samples">Samples in this beat</field>
      <field type="float" name="coherence">Emissary coherence 0..1</field>
      <field type="float" name="pid_error">PID error</field>
      <field type="float" name="pid_output">PID output 0..1</field>
      <field type="float" name="threat">Threat 0..1</field>
      <field type="float" name="o_weight">Genome O weight 0..1</field>
      <field type="uint8_t" name="decision">Decision (NOOP..QUARANTINE)</field>
      <field type="uint8_t" name="flags">Bit 0 quarantine latched, bit 1 collapse, bits 2-4 lag locked, sensor fault, coherence lost</field>
      <field type="float" name="level" units="g">Vibration level (RMS of the first difference)</field>
      <field type="float" name="kurtosis">Kurtosis of the first difference</field>
      <field type="float" name="crest">Crest factor</field>
      <field type="uint16_t" name="anoms">Exceedances in the window</field>
    </message>
  </messages>
</mavlink>
"""


def add_arguments(p):
    p.add_argument("--n", type=int, default=20000, help="frames per measurement")
    p.add_argument("--no-mpy", action="store_true", help="skip the MicroPython measurements")


def _rate(fn, n):
    """Calls per second of fn over n calls (best of 3 runs)."""
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return n / best if best > 0 else float("inf")


def _tel_args():
    return [BEAT[k] for k in P.TELEMETRY_FIELDS]


def _ours(n, auth):
    a = Auth(KEY) if auth else None
    enc = Encoder(HEADER["device_id"], HEADER["boot_id"], auth=a)
    args = _tel_args()
    era, off = HEADER["time_era"], HEADER["time_off"]
    frame = bytes(enc.telemetry(era, off, *args))

    def enc_loop(k):
        for _ in range(k):
            enc.seq = 0
            enc.telemetry(era, off, *args)

    def dec_loop(k):
        for _ in range(k):
            P.decode(frame, auth=a)
    return len(frame), _rate(enc_loop, n), _rate(dec_loop, n), frame


def _batch(n):
    enc = Encoder(HEADER["device_id"], HEADER["boot_id"])
    args = _tel_args()
    frames = [bytes(enc.telemetry(0, i, *args)) for i in range(n)]
    res = decode_telemetry_batch(frames)
    assert len(res.beats) == n and not res.rejects, res
    blob = b"".join(frames)

    def dec_list(k):
        decode_telemetry_batch(frames)

    def dec_blob(k):
        decode_telemetry_batch(blob, frame_size=len(frames[0]))
    for _ in range(P.MAX_BATCH):
        enc.batch_add(*args)
    bsize = len(enc.batch_flush(0, 0))
    m = max(1, n // P.MAX_BATCH)
    bframes = []
    for i in range(m):
        for _ in range(P.MAX_BATCH):
            enc.batch_add(*args)
        bframes.append(bytes(enc.batch_flush(0, i)))

    def dec_b5(k):
        decode_telemetry_batch(bframes)

    def enc_b5(k):  # k beats, batched by MAX_BATCH
        for _ in range(k // P.MAX_BATCH):
            enc.seq = 0
            for _ in range(P.MAX_BATCH):
                enc.batch_add(*args)
            enc.batch_flush(0, 0)
    beats = m * P.MAX_BATCH
    return (_rate(dec_list, n), _rate(dec_blob, n), bsize,
            _rate(dec_b5, m) * P.MAX_BATCH, _rate(enc_b5, beats))


def _mavlink_module(tmp):
    # pymavlink: a benchmark peer (the `dev` extra), loaded only by its row
    from pymavlink.generator import mavgen
    xml = os.path.join(tmp, "becomingone_bench.xml")
    with open(xml, "w") as f:
        f.write(MAV_XML)
    out = os.path.join(tmp, "becomingone_mav.py")
    opts = mavgen.Opts(out, wire_protocol="2.0", language="Python3", validate=False)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # mavgen prints progress; keep --json output clean
        ok = mavgen.mavgen(opts, [xml])
    if not ok:
        raise RuntimeError("mavgen failed on the benchmark dialect")
    sys.path.insert(0, tmp)
    try:
        return importlib.import_module("becomingone_mav")
    finally:
        sys.path.remove(tmp)


def _mav_fields():
    b = BEAT
    return dict(time_usec=HEADER["time_era"] * 2**30 + HEADER["time_off"],
                boot_id=HEADER["boot_id"], beat=b["beat"], period_us=b["period_us"],
                lateness_us=b["lateness_us"], dT_re=b["dT_re"], dT_im=b["dT_im"], dE0=b["dE0"],
                dEL=b["dEL"], n_samples=b["n_samples"], coherence=b["coherence"] / 65536,
                pid_error=b["pid_error"] / 32768, pid_output=b["pid_output"] / 65536,
                threat=b["threat"] / 65536, o_weight=b["o_weight"] / 65536,
                decision=b["decision_state"] & 7, flags=b["decision_state"] >> 3,
                level=2.0 ** (b["level"] / 256), kurtosis=2.0 ** (b["kurt"] / 256),
                crest=2.0 ** (b["crest"] / 256), anoms=b["anoms"])


def _mavlink(mod, n, signed):
    f = _mav_fields()
    tx = mod.MAVLink(None, srcSystem=17, srcComponent=1)
    rx = mod.MAVLink(None, srcSystem=255, srcComponent=1)
    if signed:
        for m in (tx, rx):
            m.signing.secret_key = KEY
            m.signing.link_id = 0
            m.signing.timestamp = 1
        tx.signing.sign_outgoing = True
    msg = mod.MAVLink_becomingone_telemetry_message(**f)
    frame = msg.pack(tx)
    frames = [msg.pack(tx) for _ in range(n)]  # signed frames: fresh timestamps (replay check)

    def enc_loop(k):
        for _ in range(k):
            mod.MAVLink_becomingone_telemetry_message(**f).pack(tx)

    state = {"i": 0}

    def dec_loop(k):
        if signed:  # a new receiver per run so the timestamps are fresh for it
            r = mod.MAVLink(None, srcSystem=255, srcComponent=1)
            r.signing.secret_key = KEY
            r.signing.link_id = 0
        else:
            r = rx
        for i in range(k):
            m = r.decode(bytearray(frames[i]))
            if m.get_type() == "BAD_DATA":
                raise RuntimeError("pymavlink rejected its own frame: %s" % m)
        state["i"] += k
    full = bytearray(frame)
    return len(frame), _rate(enc_loop, n), _rate(dec_loop, n), full


def _json_cbor(n):
    # cbor2: a benchmark peer (the `dev` extra), loaded only by its row
    import cbor2
    doc = dict(HEADER)
    doc["type"] = "TELEMETRY"
    doc.update(BEAT)
    rows = []
    for name, dumps, loads in (
            ("json", lambda d: json.dumps(d, separators=(",", ":")).encode(), json.loads),
            ("cbor", cbor2.dumps, cbor2.loads)):
        blob = dumps(doc)

        def enc_loop(k, dumps=dumps):
            for _ in range(k):
                dumps(doc)

        def dec_loop(k, loads=loads, blob=blob):
            for _ in range(k):
                loads(blob)
        rows.append({"name": name, "bytes": len(blob), "encode_per_s": _rate(enc_loop, n),
                     "decode_per_s": _rate(dec_loop, n)})
    return rows


MPY_SCRIPT = r"""
import sys, gc, time
sys.path.insert(0, ROOT)
from shared.frame_encoder import Encoder
from shared.auth import Auth
def run(auth, batch, n):
    enc = Encoder(17, 0x2A5C, auth=Auth(bytes(range(0xA0, 0xC0))) if auth else None)
    def one():
        enc.telemetry(0, 519873216, 123456, 4211, 37, -1234567, 7654321, 29000000, 28000000,
                      4, 62259, -517, 39321, 3277, 22938, 0)
    def five():
        for i in range(5):
            enc.batch_add(123456, 4211, 37, -1234567, 7654321, 29000000, 28000000,
                          4, 62259, -517, 39321, 3277, 22938, 0)
        enc.batch_flush(0, 519873216)
    fn = five if batch else one
    per = 5 if batch else 1
    fn()
    gc.collect()
    a0 = gc.mem_alloc()
    for i in range(200):
        fn()
    alloc = (gc.mem_alloc() - a0) / (200 * per)
    gc.collect()
    t0 = time.ticks_us()
    for i in range(n // per):
        fn()
        enc.seq = 0
    dt = time.ticks_diff(time.ticks_us(), t0)
    return {"per_s": (n // per) * per * 1e6 / dt, "alloc": alloc}
print("MPYRESULT", {"single": run(False, False, N), "auth": run(True, False, N // 4),
                    "batch": run(False, True, N)})
"""


def _mpy(n):
    exe = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable),
                                                      "micropython")
    if not os.path.exists(exe):
        return None, "micropython not found"
    script = MPY_SCRIPT.replace("ROOT", repr(FIRMWARE_ROOT)).replace("N)", "%d)" % n).replace(
        "N //", "%d //" % n)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        p = subprocess.run([exe, "-X", "heapsize=192K", path], capture_output=True, text=True,
                           timeout=120)
    finally:
        os.unlink(path)
    for line in p.stdout.splitlines():
        if line.startswith("MPYRESULT "):
            return json.loads(line[10:].replace("'", '"')), None
    return None, (p.stderr or p.stdout).strip()[-300:]


def collect(args):
    n = 2000 if getattr(args, "quick", False) else args.n
    rows = []
    mpy, mpy_err = (None, "skipped") if args.no_mpy else _mpy(min(n, 20000))
    size, e, d, frame = _ours(n, False)
    r = {"name": "becomingone", "bytes": size, "encode_per_s": e, "decode_per_s": d}
    size_a, e_a, d_a, _ = _ours(n, True)
    ra = {"name": "becomingone-auth", "bytes": size_a, "encode_per_s": e_a, "decode_per_s": d_a}
    dl, db, bsize, d5, e5 = _batch(n)
    k = P.MAX_BATCH
    rb = {"name": "becomingone-batch", "bytes": size, "encode_per_s": e, "decode_per_s": dl,
          "decode_blob_per_s": db, "bytes_per_beat_batch%d" % k: bsize / k,
          "batch%d_encode_beats_per_s" % k: e5, "batch%d_decode_beats_per_s" % k: d5}
    if mpy:
        for row, k in ((r, "single"), (ra, "auth"), (rb, "batch")):
            row["mpy_encode_per_s"] = mpy[k]["per_s"]
            row["mpy_alloc_bytes"] = mpy[k]["alloc"]
    else:
        for row in (r, ra, rb):
            row["mpy_error"] = mpy_err
    rows += [r, ra, rb]
    tmp = tempfile.mkdtemp(prefix="bench-mavlink-")
    try:
        mod = _mavlink_module(tmp)
        ms, me, md, _ = _mavlink(mod, n, False)
        ss, se, sd, _ = _mavlink(mod, n, True)
        rows.append({"name": "mavlink2", "bytes": ms, "encode_per_s": me, "decode_per_s": md})
        rows.append({"name": "mavlink2-signed", "bytes": ss, "encode_per_s": se,
                     "decode_per_s": sd})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows += _json_cbor(n)
    # the targets of issue 2, computed from this run
    # the targets of issue 2, computed from this run: bytes <= 0.8x MAVLink 2, batch decode
    # >= 10x pymavlink decode, 0 bytes allocated per encode on MicroPython
    rows.append({"name": "targets",
                 "bytes_vs_mavlink2": round(size / ms, 3),
                 "signed_bytes_vs_mavlink2_signed": round(size_a / ss, 3),
                 "batch_beat_bytes_vs_mavlink2": round(bsize / P.MAX_BATCH / ms, 3),
                 "batch_decode_vs_mavlink2": round(dl / md, 2),
                 "mpy_alloc_bytes": (mpy or {}).get("single", {}).get("alloc")})
    return rows


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(collect(ap.parse_args()), indent=1))
