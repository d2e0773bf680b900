"""`becomingone bench cell [--json] [--quick] [--devices 100,500,1000] [--seconds 2] [--all]`:
how many devices one coordinator cell takes at the default beat.

Every row runs in a process of its own, fed by a separate sender process playing N keyed
devices (wire v3). Each device has its own key K (in the cell's keystore) and first does the
session handshake with the receiver, as a Pico's device/session.py does it (docs/PROTOCOL.md
section 4.1): HELLO carrying a fresh 16-byte nonce, tagged with K; the CHALLENGE read from the
receiver's UDP reply, its tag checked with SK = HKDF-SHA256(K, host nonce || device nonce,
label || device_id || boot_id) (shared/hkdf.py); ACK(CHALLENGE) tagged with SK. Then one
TELEMETRY frame per beat at the default T_Lambda period (4211 us: 237.5 frames/s per device),
signed with SK (AUTH: truncated HMAC-SHA256, shared/auth.py) and checked by CRC like a Pico's,
sequence and time advancing, paced in real time with sendmmsg. The handshakes and the making of
the frames (vectorised; the tag and CRC per frame) happen before the sender says "ready", so
neither is in the measured window; after "go" and WARM_S s of beats the window of `seconds` s
opens. Session keys exist for one handshake only, so the frames are made per row after it (no
frame cache on disk: frames signed with one session's keys would be refused by the next).

The peer (bare-verify-N) is fair in the same way: it plays the host's role in the handshake
itself (checks the K-tagged HELLO, answers a CHALLENGE with its own random host nonce, derives
SK with becomingone.wire.handshake.session_key like the coordinator, takes the ACK under SK as
the proof), so the sender runs the very same code against both, and the peer's per-frame work
in the window is what it was before v3: CRC and the tag, with the session key looked up by
device id. The frames the peer and a cell receive are the same bytes except for the 8-byte tag
and the CRC (each session has its own SK): same devices, ids, boot ids, sequence numbers,
times, payloads, sizes and pacing.

Rows
  bare-verify-N   the peer, at the largest N: a bare recvmmsg loop in one Python thread that
                  checks each frame's CRC and tag (session key by device id) and counts; nothing
                  else (its handshakes, before the window, take a slow path of their own)
  cell-N          a real coordinator (becomingone/cell.py, default config: ledger, Master,
                  sync layer, memory; HTTP and the mesh off) for N = 100, 500, 1000 (quick 50, 200)
  cell-N-batch5-lean   the cheap raises together at the largest N: BATCH frames of 5 beats
                  (CONFIG batch_beats) and leaner memory sampling (LEAN)
  cell-N-lean-memory, cell-N-batch5   each raise alone (--all)
  ceiling         devices_sustained: the most devices whose beats all got in (kept_up);
                  devices_per_core_<row>: devices one whole core carries at that row's CPU per beat
Columns
  offered_fps / accepted_fps   frames per second sent / accepted in the window
  accepted_beats_per_s, beats_per_s_due   beats accepted (a BATCH frame carries 5) / due
  loss                         1 - accepted / sent over the whole run (0.5 s allowed to drain;
                               the handshake frames are counted in neither)
  handshake_s                  the sender's time for all N handshakes (before the window)
  proc_cpu, process_cpu        CPU of the processing thread / the whole process, share of a core
  cpu_us_per_beat              the process's CPU per accepted beat
  ingest_lag_ms p50/p99/max    time from a batch's receipt to its processing (sampled 10x/s)
  cycle_ms p50/p99, cycles_per_s   integration cycles (Master -> sync layer -> witnessing -> memory)
  rss_mb, memory_rows_per_s, rejected, overload, sessions
  kept_up, saturated           what ran out first: "processing thread" (>= 0.8 of a core or lag
                               > 500 ms), "socket" (kernel drops with room on the thread),
                               "sender" (the load was not offered in full), "cpu share" (behind
                               without using a core: the machine's cores went elsewhere)
  beats_ratio_vs_bare, cpu_per_beat_ratio_vs_bare   against the peer of the same run (same N)
"""
import argparse
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import numpy as np

PERIOD_US = 4211


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=None, help="measured window per row (default 2)")
    p.add_argument("--devices", default=None, help="comma-separated device counts (default 100,500,1000; quick 50,200)")
    p.add_argument("--all", action="store_true", help="also the single raises (lean memory; BATCH frames of 5)")


# ------------------------------------------------------------------ the sender process
HELLO = {"board": "emu", "fw_major": 0, "fw_minor": 1, "fw_patch": 0, "capabilities": 0x02FF,
         "fs_hz": 1000, "period_us": PERIOD_US, "phase_step": 2147, "lag_samples": 10, "adc_bits": 12,
         "sum_shift": 0, "pow_bits": 16, "telemetry_every": 1, "spb_max": 32, "period_min_us": 500,
         "reset_cause": 1, "boot_flags": 0, "kairos_decim": 4, "counts_per_unit_q4": 2048}
HANDSHAKE_ROUNDS = 8        # HELLOs sent per device at most (seq 0..7), one round a second
BOOT_BASE = 0x1000          # device d runs boot id BOOT_BASE + d (a CHALLENGE names no device:
                            # its boot id tells the sender which device it answers)


def _frames(devices, beats, keys, batch=1, seq0=None):
    """Signed TELEMETRY frames, one per device per `batch` beats (batch 1: single-beat frames,
    the default; else BATCH frames of `batch` records), in time order. keys: {device: session
    key}; seq0: each device's first TELEMETRY seq (a list by device - 1; default 1)."""
    from becomingone.wire.telemetry import _frame_dtype
    from shared import protocol as P
    dt = _frame_dtype(None if batch == 1 else batch, True)
    size = dt.itemsize
    frames = beats // batch
    n = devices * frames
    a = np.zeros(n, dtype=dt)
    i = np.arange(n)
    dev = 1 + (i % devices)
    fr = i // devices
    base = np.ones(devices, dtype=np.int64) if seq0 is None else np.asarray(seq0, dtype=np.int64)
    a["ver_flags"] = (P.VERSION << 4) | P.FLAG_AUTH | (P.FLAG_BATCH if batch > 1 else 0)
    a["type"] = P.TELEMETRY
    a["device_id"] = dev
    a["boot_id"] = BOOT_BASE + dev
    a["seq"] = base[dev - 1] + fr                   # after the handshake's HELLO(s) and ACK
    t_us = (fr + 1) * batch * PERIOD_US
    a["time_era"] = t_us >> 30
    a["time_off"] = t_us & ((1 << 30) - 1)
    if batch > 1:
        a["count"] = batch
        rec = a["records"]
        beat = (fr * batch)[:, None] + np.arange(1, batch + 1)[None, :]
        devc = dev[:, None]
    else:
        rec = a
        beat = fr + 1
        devc = dev
    rec["beat"] = beat
    rec["period_us"] = PERIOD_US
    rec["lateness_us"] = 3
    rec["dT_re"] = (devc * 37 + beat * 11) % 2000 - 1000
    rec["dT_im"] = (devc * 13 + beat * 7) % 2000 - 1000
    rec["dE0"] = 4000 + beat % 100
    rec["dEL"] = 3900 + beat % 100
    rec["n_samples"] = 4
    rec["coherence"] = 40000
    rec["pid_output"] = 32768
    rec["o_weight"] = 22938
    raw = bytearray(a.tobytes())
    mv = memoryview(raw)
    body = size - 12
    k = [keys[d] for d in range(1, devices + 1)]
    digest, crc32 = hmac.digest, zlib.crc32
    for j in range(n):
        off = j * size
        mv[off + body:off + body + 8] = digest(k[j % devices], mv[off:off + body], "sha256")[:8]
        mv[off + size - 4:off + size] = crc32(mv[off:off + size - 4]).to_bytes(4, "little")
    return bytes(raw), size


def _handshakes(s, dest, keys, timeout=HANDSHAKE_ROUNDS):
    """Every device's session handshake with the receiver at `dest`, the device's half as
    device/session.py does it (docs/PROTOCOL.md 4.1): HELLO with a fresh nonce tagged with K
    (sent again, seq + 1, once a second while no CHALLENGE came); the CHALLENGE from the
    receiver's reply, its tag checked with SK = shared.hkdf.session_key(K, host nonce, device
    nonce, device, boot); ACK(CHALLENGE, OK, ref = its seq) tagged with SK. Returns
    ({device: SK}, {device: the ACK's seq}, HELLOs sent); raises RuntimeError when a device got
    no valid CHALLENGE within `timeout` s."""
    from shared import protocol as P
    from shared.auth import Auth
    from shared.hkdf import NONCE_LEN, session_key
    from shared.wire_errors import ProtocolError
    devices = len(keys)
    nonce = {d: os.urandom(NONCE_LEN) for d in keys}
    seq = {d: 0 for d in keys}                     # the next seq of each device
    sks, acks = {}, {}
    hellos = 0
    s.setblocking(False)

    def drain():
        while True:
            try:
                data = s.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) < P.HEADER_LEN + NONCE_LEN or data[1] != P.CHALLENGE:
                continue                           # other host frames: not the handshake's
            boot = data[4] | (data[5] << 8)
            d = boot - BOOT_BASE
            if d not in keys or d in sks:
                continue
            sk = session_key(keys[d], data[P.HEADER_LEN:P.HEADER_LEN + NONCE_LEN], nonce[d], d, boot)
            auth = Auth(sk)
            try:
                f = P.decode(data, auth=auth)      # the tag proves the host holds K, saw our nonce
            except ProtocolError:
                continue
            if f.device_id != 0 or f.boot_id != boot:
                continue
            sks[d], acks[d] = sk, seq[d]
            s.sendto(P.encode(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": f.seq},
                              d, boot, seq[d], auth=auth), dest)
            seq[d] += 1

    t0 = time.monotonic()
    while len(sks) < devices and time.monotonic() - t0 < timeout:
        t_round = time.monotonic()
        for i, d in enumerate([d for d in keys if d not in sks]):
            s.sendto(P.encode(P.HELLO, dict(HELLO, nonce=nonce[d]), d, BOOT_BASE + d, seq[d],
                              auth=Auth(keys[d])), dest)
            seq[d] += 1
            hellos += 1
            if i % 64 == 63:                       # paced, and the replies read as they come
                drain()
                time.sleep(0.002)
        while len(sks) < devices and time.monotonic() - t_round < 1.0:
            drain()
            time.sleep(0.002)
    drain()
    s.setblocking(True)
    if len(sks) < devices:
        raise RuntimeError("handshake: %d of %d devices got no valid CHALLENGE in %.0f s"
                           % (devices - len(sks), devices, timeout))
    return sks, acks, hellos


def _sender(port, devices, seconds, keyfile, batch=1):
    """Plays `devices` keyed devices for `seconds` s: each one's handshake with the receiver,
    then their beats in real time, signed with the session keys. The frames are made after the
    handshakes (they need the session keys), before "ready"."""
    from becomingone.links import mmsg
    with open(keyfile) as f:
        keys = {int(d): bytes.fromhex(k) for d, k in json.load(f).items()}
    keys = {d: keys[d] for d in range(1, devices + 1)}
    beats = int(seconds * 1e6 / PERIOD_US) + 1
    beats -= beats % batch
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    dest = ("127.0.0.1", port)
    t0 = time.perf_counter()
    sks, acks, hellos = _handshakes(s, dest, keys)
    handshake_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob, size = _frames(devices, beats, sks, batch, [acks[d] + 1 for d in range(1, devices + 1)])
    make_s = time.perf_counter() - t0
    sender = mmsg.MmsgSender(s, dest, blob, size) if mmsg.available() else None
    print("ready", flush=True)
    sys.stdin.readline()
    total = len(blob) // size
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - t0) * 1e6 / (PERIOD_US * batch) * devices) + devices)
        if due > sent:
            if sender is not None:
                sender.send(sent, due - sent)
            else:
                for j in range(sent, due):
                    s.sendto(blob[j * size:(j + 1) * size], dest)
            sent = due
        time.sleep(0.002)
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0, "handshakes": len(sks),
                      "hellos": hellos, "handshake_s": handshake_s, "frames_made_s": make_s,
                      "beats": sent * batch}), flush=True)


# ------------------------------------------------------------------ the cell process
def _thread_cpu(tid):
    try:
        with open("/proc/self/task/%d/stat" % tid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _threads_cpu():
    """{thread name: CPU seconds} of this process's busiest threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/comm" % tid) as f:
                name = f.read().strip()
        except OSError:
            continue
        cpu = _thread_cpu(int(tid))
        if cpu:
            out[name] = round(out.get(name, 0.0) + cpu, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:6])


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def _pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


WARM_S = 1.0       # the first beats flowing before the window opens (handshakes before "go")
TAIL_S = 0.3       # the sender keeps going this long after the window closes


class _Sender:
    """The device sender process (`python -m becomingone.bench.cell --send ...`)."""

    def __init__(self, port, devices, seconds, keyfile, batch):
        self.p = subprocess.Popen([sys.executable, "-m", "becomingone.bench.cell", "--send", str(port),
                                   str(devices), str(WARM_S + seconds + TAIL_S), keyfile, str(batch)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError("the device sender did not start: %r" % line)

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def result(self):
        out = json.loads(self.p.stdout.readline())
        self.p.wait(30)
        return out

    def close(self):
        if self.p.poll() is None:
            self.p.kill()                         # by PID: the sender we started
            self.p.wait(5)


def _settle(done, timeout=2.0):
    """Wait (at most `timeout` s) until done() holds."""
    t0 = time.monotonic()
    while not done() and time.monotonic() - t0 < timeout:
        time.sleep(0.01)


def _window(seconds, sample=None):
    """Sleep through the measured window (calling sample() every 0.1 s); its length in s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if sample is not None:
            sample()
        time.sleep(0.1)
    return time.monotonic() - t0


def _bare(devices, seconds, workdir, batch=1):
    """The peer: the least a cell must do per frame, in one Python thread like the coordinator's.
    A bare recvmmsg loop (the same 16 MB socket buffer as the coordinator's UDP link) that checks
    each frame's CRC and AUTH tag (the device's session key looked up by its id) and counts what
    passes. No decode, sessions, Master, ledger or memory. A frame no session key verifies takes
    the slow path: the host's half of the handshake (a K-tagged HELLO gets a CHALLENGE with the
    peer's own host nonce, tagged with SK; the first frame under that SK establishes the
    session), as host/devices/handshake.py does it; only handshakes take it, before the window."""
    from becomingone.links import mmsg
    from becomingone.links.udp import set_rcvbuf
    from becomingone.wire.handshake import new_nonce, session_key
    from shared import protocol as P
    from shared.auth import Auth
    from shared.wire_errors import ProtocolError
    keyfile = os.path.join(workdir, "keys-%d.json" % devices)
    with open(keyfile) as f:
        keys = {int(d): bytes.fromhex(k) for d, k in json.load(f).items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_rcvbuf(s, 16 << 20)
    s.bind(("127.0.0.1", 0))
    r = mmsg.MmsgReceiver(s, vlen=1024, slot=512)
    counts = [0, 0]                               # frames, beats accepted
    sessions = {}                                 # device id -> session key (bytes)
    pending = {}                                  # device id -> ((boot, device nonce), host nonce, SK)
    hs = {"challenges": 0, "completed": 0}
    stop = threading.Event()
    tid = [None]

    def handshake(b, name):
        """The slow path: a frame no session key verified (CRC already checked)."""
        dev = int.from_bytes(b[2:4], "little")
        boot = int.from_bytes(b[4:6], "little")
        k = keys.get(dev)
        if k is None:
            return
        p = pending.get(dev)
        if b[1] == P.HELLO:
            try:
                f = P.decode(b, auth=Auth(k))
            except ProtocolError:
                return
            key = (boot, bytes(f.fields["nonce"]))
            if p is None or p[0] != key:
                hn = new_nonce()
                p = pending[dev] = (key, hn, session_key(k, hn, key[1], dev, boot))
            addr = (socket.inet_ntoa(bytes(name[4:8])), int.from_bytes(bytes(name[2:4]), "big"))
            s.sendto(P.encode(P.CHALLENGE, {"nonce": p[1]}, 0, boot, 1 + hs["challenges"],
                              auth=Auth(p[2])), addr)
            hs["challenges"] += 1
        elif p is not None and p[0][0] == boot:
            try:
                P.decode(b, auth=Auth(p[2]))       # the proof: a frame under the pending SK
            except ProtocolError:
                return
            sessions[dev] = p[2]
            del pending[dev]
            hs["completed"] += 1

    def loop():
        tid[0] = threading.get_native_id()
        digest, crc32, cmp = hmac.digest, zlib.crc32, hmac.compare_digest
        while not stop.is_set():
            rows, lens, names = r.recv()
            if not len(lens):
                time.sleep(0.0005)
                continue
            for row, n, name in zip(rows, lens, names):
                b = row[:n].tobytes()
                if n < 20 or crc32(b[:-4]) != int.from_bytes(b[-4:], "little"):
                    continue
                k = sessions.get(int.from_bytes(b[2:4], "little"))
                if k is None or not b[0] & P.FLAG_AUTH or not cmp(digest(k, b[:-12], "sha256")[:8], b[-12:-4]):
                    handshake(b, name)
                    continue
                counts[0] += 1
                counts[1] += b[P.HEADER_LEN] if b[0] & P.FLAG_BATCH else 1
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    g = _Sender(s.getsockname()[1], devices, seconds, keyfile, batch)
    try:
        _settle(lambda: len(sessions) >= devices)  # the last ACKs taken
        base = counts[0]                          # the handshakes are done: count from here
        g.go()
        time.sleep(WARM_S)
        a0, b0, cpu0 = counts[0], counts[1], _thread_cpu(tid[0])
        pcpu0 = sum(os.times()[:2])
        dt = _window(seconds)
        a1, b1, cpu1 = counts[0], counts[1], _thread_cpu(tid[0])
        pcpu = (sum(os.times()[:2]) - pcpu0) / dt
        out = g.result()
        time.sleep(0.5)
    finally:
        g.close()
        stop.set()
        th.join(5)
    res = {"devices": devices, "batch": batch, "seconds": round(dt, 2),
           "offered_fps": out["sent"] / out["seconds"], "accepted_fps": (a1 - a0) / dt,
           "accepted_beats_per_s": (b1 - b0) / dt, "beats_per_s_due": devices * 1e6 / PERIOD_US,
           "loss": max(0.0, 1.0 - (counts[0] - base) / max(1, out["sent"])),
           "proc_cpu": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / dt,
           "process_cpu": pcpu, "rss_mb": round(_rss_mb(), 1),
           "handshake_s": round(out["handshake_s"], 3), "sessions": len(sessions)}
    print(json.dumps(res), flush=True)


def start_keyed_cell(tmp, keyfile, overrides=None):
    """A cell in data folder `tmp` on a loopback UDP link whose keystore holds the devices of
    `keyfile` ({device id: key hex}, made by _keys); returns (the started Cell, its coordinator
    not yet running; {device id: key})."""
    from becomingone.cell import Cell
    from becomingone.config import load_config
    from becomingone.ingest.keystore import Keystore
    with open(keyfile) as f:
        keys = {int(d): bytes.fromhex(k) for d, k in json.load(f).items()}
    over = {"data_dir": tmp, "security.intrinsic": False}
    over.update(overrides or {})
    cfg = load_config(overrides=over)
    ks = Keystore(None)                       # keys put in memory, the file written once
    for d, k in keys.items():
        ks.add(d, k)
    ks.path = cfg.keystore_path()
    ks.save()
    return Cell(cfg, links=["udp://127.0.0.1:0"], control=False, http=False).start(), keys


def _cell(devices, seconds, workdir, overrides, batch=1):
    keyfile = os.path.join(workdir, "keys-%d.json" % devices)
    with tempfile.TemporaryDirectory(prefix="bo-cell-") as tmp:
        cell, _ = start_keyed_cell(tmp, keyfile, overrides)
        c = cell.coordinator
        cycles, rows = [], [0]
        core = c.core
        orig_tick = core.tick

        def tick(now=None, health=None):
            t = time.perf_counter()
            out = orig_tick(now, health)
            if out is not None:
                cycles.append(time.perf_counter() - t)
            return out
        core.tick = tick
        mem = core.memory
        orig_flush = mem.flush

        def flush():
            n = orig_flush()
            rows[0] += n or 0
            return n
        mem.flush = flush
        tid = [None]

        def run():
            tid[0] = threading.get_native_id()
            prof = os.environ.get("BO_BENCH_PROFILE")    # diagnosis: the processing thread's profile
            if prof:
                import cProfile
                cProfile.runctx("c.run()", globals(), {"c": c}, prof)
            else:
                c.run()
        th = threading.Thread(target=run, daemon=True)
        th.start()
        port = int(c.links[0].local_url.rsplit(":", 1)[1])
        g = None
        try:
            g = _Sender(port, devices, seconds, keyfile, batch)
            _settle(lambda: len(c.sessions.current) >= devices)   # the last ACKs taken
            base = c.counters["frames_accepted"]  # the handshakes are done: count from here
            g.go()
            time.sleep(WARM_S)
            lags = []
            a0, r0, cpu0, n0 = c.counters["frames_accepted"], rows[0], _thread_cpu(tid[0]), len(cycles)
            b0 = c.counters["beats"]
            pcpu0 = sum(os.times()[:2])
            dt = _window(seconds, lambda: lags.append(c.ingest_lag_us / 1000.0))
            a1, r1, cpu1, n1 = c.counters["frames_accepted"], rows[0], _thread_cpu(tid[0]), len(cycles)
            b1 = c.counters["beats"]
            pcpu = (sum(os.times()[:2]) - pcpu0) / dt
            out = g.result()
            time.sleep(0.5)                       # what is queued gets processed
            accepted_total = c.counters["frames_accepted"] - base
            res = {"devices": devices, "batch": batch, "seconds": round(dt, 2),
                   "offered_fps": out["sent"] / out["seconds"],
                   "accepted_fps": (a1 - a0) / dt, "accepted_beats_per_s": (b1 - b0) / dt,
                   "beats_per_s_due": devices * 1e6 / PERIOD_US,
                   "loss": max(0.0, 1.0 - accepted_total / max(1, out["sent"])),
                   "ingest_lag_ms_p50": _pct(lags, 0.5), "ingest_lag_ms_p99": _pct(lags, 0.99),
                   "ingest_lag_ms_max": max(lags) if lags else None,
                   "cycle_ms_p50": (_pct(cycles[n0:n1], 0.5) or 0) * 1000,
                   "cycle_ms_p99": (_pct(cycles[n0:n1], 0.99) or 0) * 1000,
                   "cycles_per_s": (n1 - n0) / dt,
                   "proc_cpu": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / dt,
                   "process_cpu": pcpu, "rss_mb": round(_rss_mb(), 1),
                   "memory_rows_per_s": (r1 - r0) / dt,
                   "rejected": {k: v for k, v in c.tally.rejected.items() if v},
                   "overload": c.tally.overload, "sessions": len(c.sessions.current),
                   "handshake_s": round(out["handshake_s"], 3)}
        finally:
            if g is not None:
                g.close()
            c.stop()
            th.join(30)
    print(json.dumps(res), flush=True)


# ------------------------------------------------------------------ the rows
def _child(name, args, timeout=300):
    cmd = [sys.executable, "-m", "becomingone.bench.cell"] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        row = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"name": name, "error": " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])}
    # the process's CPU per accepted beat (all its threads): what the machine's load does not
    # change much, and what a core's worth of devices is estimated from
    b = row["accepted_beats_per_s"]
    row["cpu_us_per_beat"] = row["process_cpu"] * 1e6 / b if b else None
    return dict({"name": name}, **row)


def bare_row(devices, seconds, workdir, batch=1):
    return _child("bare-verify-%d" % devices, ["--bare", devices, seconds, workdir, batch])


def cell_row(devices, seconds, workdir, overrides=None, name=None, batch=1):
    row = _child(name or "cell-%d" % devices,
                 ["--cell", devices, seconds, workdir, json.dumps(overrides or {}), batch])
    if "error" in row:
        return row
    cpu = row.get("proc_cpu") or 0.0
    lag = row.get("ingest_lag_ms_p99") or 0.0
    row["kept_up"] = row["accepted_beats_per_s"] >= 0.95 * row["beats_per_s_due"] and lag < 500.0
    if row["kept_up"]:
        row["saturated"] = None
    elif row["offered_fps"] * row["batch"] < 0.9 * row["beats_per_s_due"] and cpu < 0.8 and lag < 500.0:
        row["saturated"] = "sender"                # the load was not offered in full (shared cores)
    elif cpu >= 0.8 or lag > 500.0:
        row["saturated"] = "processing thread"     # batches wait in the inbox for the one thread
    elif row["loss"] > 0.01:
        row["saturated"] = "socket"                # dropped in the kernel, the thread had room
    else:
        # behind without using a core: the process did not get the CPU (a shared machine)
        row["saturated"] = "cpu share"
    return row


# the cheap raises measured beside the defaults: devices send TELEMETRY in BATCH frames of 5
# beats (CONFIG batch_beats: 5x fewer frames, tags and CRCs per beat), and the memory store
# samples less (a telemetry row per device per second instead of 10, Emissary meso records
# every 0.1 s instead of 0.01 s)
LEAN = {"memory.telemetry_interval": 1.0, "emissary.witness_interval": 0.1}


def _keys(workdir, devices):
    path = os.path.join(workdir, "keys-%d.json" % devices)
    if not os.path.exists(path):
        with open(path, "w") as f:
            json.dump({str(d): os.urandom(32).hex() for d in range(1, devices + 1)}, f)


def collect(args):
    quick = bool(getattr(args, "quick", False))
    seconds = args.seconds or 2.0
    counts = [int(x) for x in args.devices.split(",")] if args.devices else ([50, 200] if quick else [100, 500, 1000])
    top = max(counts)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bo-bench-cell-") as work:
        for n in counts:
            _keys(work, n)
        peer = bare_row(top, seconds, work)
        rows.append(peer)
        rows += [cell_row(n, seconds, work) for n in counts]
        if args.all:
            rows.append(cell_row(top, seconds, work, LEAN, name="cell-%d-lean-memory" % top))
            rows.append(cell_row(top, seconds, work, name="cell-%d-batch5" % top, batch=5))
        rows.append(cell_row(top, seconds, work, LEAN, name="cell-%d-batch5-lean" % top, batch=5))
    # ratios against the peer, same run, same device count and same sender: beats accepted per
    # second (a BATCH frame carries 5), and the process's CPU per accepted beat
    pb, pc = peer.get("accepted_beats_per_s"), peer.get("cpu_us_per_beat")
    for r in rows[1:]:
        if r.get("devices") != top or "error" in r or not pb:
            continue
        r["beats_ratio_vs_bare"] = r["accepted_beats_per_s"] / pb
        if pc and r.get("cpu_us_per_beat"):
            r["cpu_per_beat_ratio_vs_bare"] = r["cpu_us_per_beat"] / pc
    # the ceiling: the most devices whose beats all got in, measured; and from the CPU per beat
    # of each configuration at the top count, how many devices one whole core would carry
    ok = [r["devices"] for r in rows[1:len(counts) + 1] if r.get("kept_up")]
    ceiling = {"name": "ceiling", "devices_sustained": max(ok) if ok else 0, "devices_tried": counts,
               "seconds_per_row": seconds}
    per_dev = 1e6 / PERIOD_US
    for r in rows:
        if r.get("devices") == top and r.get("cpu_us_per_beat"):
            ceiling["devices_per_core_" + r["name"].replace("-%d" % top, "")] = round(1e6 / (r["cpu_us_per_beat"] * per_dev))
    rows.append(ceiling)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--send":
        _sender(int(argv[1]), int(argv[2]), float(argv[3]), argv[4], int(argv[5]))
        return 0
    if argv and argv[0] == "--bare":
        _bare(int(argv[1]), float(argv[2]), argv[3], int(argv[4]))
        return 0
    if argv and argv[0] == "--cell":
        _cell(int(argv[1]), float(argv[2]), argv[3], json.loads(argv[4]), int(argv[5]))
        return 0
    p = argparse.ArgumentParser()
    add_arguments(p)
    p.add_argument("--quick", action="store_true")
    print(json.dumps(collect(p.parse_args(argv)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
