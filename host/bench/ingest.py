"""`becomingone bench ingest [--json]`: frames/s one host ingests from a load generator over
loopback UDP, against a bare socket receive loop in the same run; plus the Master rows
(host/bench/master.py, when present) and the coordinator's resident memory at 100 devices.

Rows
  bare-recv   a bare `sock.recv_into()` loop (counts datagrams, nothing else): the peer the
              target is stated against
  bare-recvmmsg  a bare recvmmsg drain loop (no decode), for context: the ceiling of the
              system-call path our link uses
  becomingone the real coordinator (host/coordinator/service.py) in this process: UDP link in recvmmsg
              block mode -> numpy batch decode (host/wire/telemetry.py) -> admission/rate limit ->
              sessions (seq gaps/dups) -> Master.ingest_records; ledger open
  master, naive  from host/bench/master.py (host-core engineer), if importable
  footprint   rss_mb_100_devices: VmRSS of a fresh coordinator process after HELLO and
              2400 beats (~10 s) of TELEMETRY from each of 100 emulated devices (sent by a
              separate generator process), with the HTTP server (host/http) on and used
              (device list, metrics scrape, dashboard snapshot and event, page);
              rss_mb_idle: the same process before any device;
              master_ring_mb_bound: the Master's rings for 100 devices (host/core/master.py);
              rss_mb_100_devices_fine_span_2s: the same with master.fine_span = 2 s;
              rss_mb_100_devices_no_http: the same with the HTTP server off
  junk-mix    genuine keyed devices (wire v3: each one's session handshake first, then its
              beats at the default period, signed with the session key; the sender of
              `becomingone bench cell`) into a real cell (becomingone/cell.py, default config,
              HTTP off) while a second process sends junk at junk_per_s: datagrams alternating
              TELEMETRY-typed (a plausible header from a random device id, the right length,
              random payload, a correct CRC: no key is needed for any of it) and other types
              and lengths (issue 13's worst mix). One row per rate (--junk-rates, default
              0,2000,5000; 0 is the clean run the others are compared with, same invocation).
              Columns: junk_per_s, junk_sent, genuine_sent, genuine_accepted, genuine_lost,
              loss, accepted_fps (genuine frames/s in the window), lag_s (the largest ingest
              lag seen, s: a batch's receipt by the link reader to its processing; also
              lag_s_p99 and lag_s_max), junk_rejected
              (by reason), phantom_devices (sessions that are not the genuine devices'), and
              against the clean run: accepted_ratio_vs_clean, fps_ratio_vs_clean,
              lag_ratio_vs_clean; ratio_vs_bare: accepted_fps / the bare-recv row (when run),
              offered_fps (genuine frames/s the sender offered) and offered_ratio_vs_bare.
              The genuine load (--junk-devices auto, the default) is sized from the bare-recv
              row of the same run: AUTO_SHARE (0.55) x its frames/s, so that 0 lost and
              ratio_vs_bare >= 0.5 together say the cell takes half the bare loop's rate (the
              margin over 0.5: accepted_fps is taken over a 3 s window whose ends the lag
              moves by a few %); a fixed smaller load could only show the load it was offered. shed: the frames the
              link readers shed by reason (overload, shed); queued_frames_max: the deepest
              inbox (frames) seen in the window; process_cpu: the cell process's CPU in the
              window (share of one core: the machine's cores are shared with the senders),
              cpu_us_per_frame: that per genuine frame accepted.
  load        the same cell and sender with no junk, for each of --load-devices (default
              600,1500): offered_fps against accepted_fps, genuine_lost, shed by reason, lag,
              ratio_vs_bare, accepted_vs_offered and fps_ratio_vs_best (accepted_fps against
              the best load row of the run). At 1,500 devices the offered load (~356k/s)
              is beyond a cell's capacity: the row shows it shed at the reader (overload,
              counted) and held its rate instead of collapsing.
Columns: frames_per_s, lost (= sent - accepted), sent, offered_per_s, ratio_vs_bare.

The load generator is a separate process (`python -m becomingone.bench.ingest --gen ...`) sending
pre-encoded single-beat TELEMETRY frames (55 bytes, 500 devices round-robin, increasing
seq/beat) with sendmmsg (tools: host/links/mmsg.py). Each target is first offered the
generator's full speed; when frames are lost the run is repeated at 0.85x the rate it
sustained (each rate is tried twice before lowering it), until a run loses nothing (at most 6
runs): frames_per_s is then the rate received with 0 loss. Every receiver (bare loops and the
coordinator's link) asks for the same 16 MB socket buffer. The machine's cores are shared
by generator and receiver.
"""
import http.client
import importlib
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

from becomingone.cell import Cell
from becomingone.config import load_config
from becomingone.coordinator.service import Coordinator
from becomingone.links import mmsg
from becomingone.links.udp import set_rcvbuf
from becomingone.wire.telemetry import TELEMETRY_DTYPE
from shared import protocol as P

FRAME = TELEMETRY_DTYPE.itemsize
RCVBUF = 16 << 20          # every receiver gets the same buffer as the coordinator's UDP link
AUTO_SHARE = 0.55          # --junk-devices auto: the genuine load offered, as a share of bare-recv
DEVICE_FPS = 1e6 / 4211    # one device's frames/s at the default beat


def add_arguments(p):
    p.add_argument("--frames", type=int, default=None, help="frames per run (default 300000, quick 40000)")
    p.add_argument("--devices", type=int, default=500, help="emulated devices in the load")
    p.add_argument("--no-footprint", action="store_true", help="skip the footprint row")
    p.add_argument("--junk-rates", default="0,2000,5000",
                   help="junk datagrams/s of the junk-mix rows, comma-separated (0: the clean run "
                   "the others are compared with; empty: no junk-mix rows)")
    p.add_argument("--junk-devices", default="auto",
                   help="genuine keyed devices in the junk-mix rows (237.5 frames/s each); auto "
                   "(default): enough to offer %.2fx the bare-recv row of the same run, so that "
                   "the rows show whether the cell takes half the bare loop's rate" % AUTO_SHARE)
    p.add_argument("--load-devices", default="600,1500",
                   help="device counts of the load rows (comma-separated; empty: none): genuine "
                   "devices with no junk, offered load against what the cell takes; beyond its "
                   "capacity the cell must shed at the reader (overload) and hold its rate")
    p.add_argument("--junk-seconds", type=float, default=3.0, help="measured window of a junk-mix row")
    p.add_argument("--only-junk", action="store_true",
                   help="only the bare-recv row (for ratio_vs_bare), the junk-mix rows and the load rows")


def build_frames(n, devices, start_seq=0):
    """n pre-encoded TELEMETRY frames, devices round-robin; one contiguous blob."""
    a = np.zeros(n, dtype=TELEMETRY_DTYPE)
    i = np.arange(n)
    dev = 1 + (i % devices)
    seq = start_seq + i // devices
    a["ver_flags"] = P.VERSION << 4
    a["type"] = P.TELEMETRY
    a["device_id"] = dev
    a["boot_id"] = 0x1000 + dev
    a["seq"] = seq
    a["time_off"] = (seq * 4211) % P.SEQ_LIMIT
    a["beat"] = seq + 1
    a["period_us"] = 4211
    a["dT_re"] = (dev * 37 + seq * 11) % 2000 - 1000
    a["dT_im"] = (dev * 13 + seq * 7) % 2000 - 1000
    a["dE0"] = 4000 + seq % 100
    a["dEL"] = 3900 + seq % 100
    a["n_samples"] = 4
    a["coherence"] = 40000
    a["pid_output"] = 32768
    a["o_weight"] = 22938
    raw = bytearray(a.tobytes())
    mv = memoryview(raw)
    crcs = np.fromiter((zlib.crc32(mv[k * FRAME:k * FRAME + FRAME - 4]) for k in range(n)),
                       dtype=np.uint32, count=n)
    a = np.frombuffer(raw, dtype=TELEMETRY_DTYPE).copy()
    a["crc"] = crcs
    return a.tobytes()


HELLO = {"board": "emu", "fw_major": 0, "fw_minor": 1, "fw_patch": 0, "capabilities": 0,
         "fs_hz": 1000, "period_us": 4211, "phase_step": 2147, "lag_samples": 10,
         "adc_bits": 12, "sum_shift": 0, "pow_bits": 16, "telemetry_every": 1,
         "spb_max": 32, "period_min_us": 500, "reset_cause": 1, "boot_flags": 0,
         "kairos_decim": 4, "counts_per_unit_q4": 2048, "nonce": bytes(16)}
WARM_FRAMES = 2            # per device before the measured run: its HELLO (seq 0), one beat


def _generator(port, n, devices, rate):
    # the first `devices` frames: warm-up; TELEMETRY from seq 1 (seq 0 is the HELLO)
    blob = build_frames(n + devices, devices, start_seq=1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = ("127.0.0.1", port)
    sender = mmsg.MmsgSender(s, dest, blob, FRAME) if mmsg.available() else None
    hellos = [P.encode(P.HELLO, HELLO, d, 0x1000 + d, 0) for d in range(1, devices + 1)]
    print("ready", flush=True)
    sys.stdin.readline()
    # unmeasured: each device's HELLO (a keyless device's boot is opened by its HELLO under
    # the default admission, observe), then one beat per device
    for j in range(devices):
        s.sendto(hellos[j], dest)
        if j % 64 == 63:
            time.sleep(0.001)
    for j in range(devices):
        s.sendto(blob[j * FRAME:(j + 1) * FRAME], dest)
        if j % 64 == 63:
            time.sleep(0.001)
    print("warmed", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    chunk = 128
    sent = 0
    n += devices
    sent = devices
    while sent < n:
        k = min(chunk, n - sent)
        if sender is not None:
            sender.send(sent, k)
        else:
            for j in range(sent, sent + k):
                s.sendto(blob[j * FRAME:(j + 1) * FRAME], dest)
        sent += k
        if rate:
            due = t0 + (sent - devices) / rate
            while True:
                d = due - time.perf_counter()
                if d <= 0:
                    break
                if d > 0.001:
                    time.sleep(d - 0.0005)
    dt = time.perf_counter() - t0
    print(json.dumps({"sent": sent - devices, "seconds": dt}), flush=True)


class _Gen:
    def __init__(self, port, n, devices, rate):
        self.p = subprocess.Popen([sys.executable, "-m", "becomingone.bench.ingest", "--gen", str(port),
                                   str(n), str(devices), str(rate)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("load generator did not start: %r" % line)

    def warm(self):
        self.p.stdin.write("warm\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if line.strip() != "warmed":
            raise RuntimeError("load generator: %r" % line)

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        return time.perf_counter()

    def result(self):
        out = json.loads(self.p.stdout.readline())
        self.p.wait(30)
        return out


def _bare(n, devices, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_rcvbuf(s, RCVBUF)
    s.bind(("127.0.0.1", 0))
    s.settimeout(1.0)
    g = _Gen(s.getsockname()[1], n, devices, rate)
    buf = bytearray(2048)
    g.warm()
    for _ in range(WARM_FRAMES * devices):
        s.recv_into(buf)
    got = 0
    t0 = g.go()
    t_last = t0
    recv = s.recv_into
    try:
        while got < n:
            recv(buf)
            got += 1
        t_last = time.perf_counter()
    except socket.timeout:
        t_last = time.perf_counter() - 1.0
    gen = g.result()
    s.close()
    return got, max(1e-9, t_last - t0), gen


def _bare_mmsg(n, devices, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_rcvbuf(s, RCVBUF)
    s.bind(("127.0.0.1", 0))
    r = mmsg.MmsgReceiver(s, vlen=1024, slot=512)
    g = _Gen(s.getsockname()[1], n, devices, rate)
    g.warm()
    w = 0
    while w < WARM_FRAMES * devices:
        w += len(r.recv()[1])
    got = 0
    t0 = g.go()
    t_last = idle = time.perf_counter()
    while got < n:
        k = len(r.recv()[1])
        now = time.perf_counter()
        if k:
            got += k
            t_last = idle = now
        elif now - idle > 1.0:
            break
    gen = g.result()
    s.close()
    return got, max(1e-9, t_last - t0), gen


def _ours(n, devices, rate):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides={"data_dir": tmp})
        c = Coordinator(cfg, links=["udp://127.0.0.1:0"], control=False).start()
        th = threading.Thread(target=c.run, daemon=True)
        th.start()
        try:
            port = int(c.links[0].local_url.rsplit(":", 1)[1])
            g = _Gen(port, n, devices, rate)
            g.warm()
            cn = c.counters

            def done():
                return cn["frames_accepted"] + cn["frames_rejected"]
            end = time.time() + 30
            while done() < WARM_FRAMES * devices and time.time() < end:
                time.sleep(0.01)
            base_acc, base = cn["frames_accepted"], done()
            base_rej = dict(c.rejected)
            t0 = g.go()
            t_last = wait_processed(done, base, n, t0)
            gen = g.result()
            acc = cn["frames_accepted"] - base_acc
            rej = {k: v - base_rej.get(k, 0) for k, v in c.rejected.items() if v - base_rej.get(k, 0)}
        finally:
            c.stop()
            th.join(30)
    return acc, max(1e-9, t_last - t0), gen, rej


def wait_processed(done, base, n, t0, idle_s=1.0):
    """Poll done() until n frames past `base` were handled, or nothing moved for idle_s;
    returns the perf_counter time of the last progress (the end of the measured span)."""
    last, t_last, idle = base, t0, time.perf_counter()
    while True:
        time.sleep(0.002)
        cur = done()
        now = time.perf_counter()
        if cur != last:
            last, t_last, idle = cur, now, now
            if cur - base >= n:
                return t_last
        elif now - idle > idle_s:
            return t_last


def _sustained(fn, n, devices):
    """Full speed first; on loss the same rate is tried once more (the VM's cores are shared,
    a stall elsewhere can overflow any buffer), then 0.85x the rate the receiver sustained,
    at most 6 runs; the first run without loss is reported (else the last)."""
    rate = 0
    best = None
    lossy_at = None
    for _ in range(6):
        r = fn(n, devices, rate)
        got, secs, gen = r[0], r[1], r[2]
        row = {"frames_per_s": round(got / secs), "lost": int(gen["sent"] - got),
               "sent": int(gen["sent"]), "offered_per_s": round(gen["sent"] / gen["seconds"])}
        if len(r) > 3 and r[3]:
            row["rejected"] = r[3]
        best = row
        if row["lost"] == 0:
            break
        if lossy_at != rate:
            lossy_at = rate                 # once more at the same rate
            continue
        rate = int(0.85 * row["frames_per_s"])
    return best


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def _use_http(server):
    """Exercise the HTTP server (becomingone/http) before measuring: the device list, a metrics
    scrape, a dashboard snapshot and one server-sent event, as a dashboard and Prometheus do."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for path in ("/api/devices", "/metrics", "/api/snapshot", "/api/events?max_events=1", "/"):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit("HTTP %s: %d" % (path, r.status))
        if r.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.close()


def _footprint_child(devices, beats, fine_span=None, http=True):
    """Runs in a fresh process: coordinator (HTTP server on a free port, used before the
    measurement, unless http is False) + 100 devices' worth of traffic; prints JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        over = {"data_dir": tmp}
        if fine_span:
            over["master.fine_span"] = fine_span
        cfg = load_config(overrides=over)
        cell = Cell(cfg, links=["udp://127.0.0.1:0"], control=False,
                    http="127.0.0.1:0" if http else False).start()
        c = cell.coordinator
        th = threading.Thread(target=c.run, daemon=True)
        th.start()
        idle = _rss_mb()
        port = int(c.links[0].local_url.rsplit(":", 1)[1])
        # the traffic (each device's HELLO, then its beats) comes from a separate generator
        # process (its memory is not counted)
        g = _Gen(port, devices * beats, devices, 60000)
        g.warm()
        g.go()
        g.result()
        sent = devices * beats + WARM_FRAMES * devices
        deadline = time.time() + 20
        while c.counters["frames_received"] < sent and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        if http:
            _use_http(cell.http)
        rss = _rss_mb()
        bound = c.master.ring_bytes() * devices / 2 ** 20 if c.master else 0.0
        out = {"rss_mb_100_devices": round(rss, 1), "rss_mb_idle": round(idle, 1), "http": bool(http),
               "beats_per_device": beats,
               "devices_seen": len(c.sessions.current), "frames": c.counters["frames_accepted"],
               "master_ring_mb_bound": round(bound, 1)}
        c.stop()
        th.join(30)
    print(json.dumps(out), flush=True)


def _footprint(beats, fine_span=None, http=True):
    cmd = [sys.executable, "-m", "becomingone.bench.ingest", "--footprint", "100", str(beats),
           str(fine_span or 0), "http" if http else "no-http"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": " ".join((r.stderr or r.stdout).strip().splitlines()[-1:])}


# ------------------------------------------------------------------ junk-mix
def junk_datagrams(n, seed=13):
    """n junk datagrams of issue 13's worst mix: even ones TELEMETRY-typed (version, type and
    length right, a random device id, boot, seq and payload, a correct CRC), odd ones of other
    types (HELLO, WITNESS, HEARTBEAT, ACK or any byte) and random lengths, some with the AUTH
    flag, with a correct CRC too."""
    import random
    from shared.crc import crc32_store
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            k = P.HEADER_LEN + P.TELEMETRY_LEN
            b = bytearray(rng.randbytes(k + P.CRC_LEN))
            b[0] = P.VERSION << 4
            b[1] = P.TELEMETRY
        else:
            k = rng.randrange(8, 80)
            b = bytearray(rng.randbytes(k + P.CRC_LEN))
            b[0] = (P.VERSION << 4) | rng.choice((0, P.FLAG_AUTH))
            b[1] = rng.choice((P.HELLO, P.WITNESS, P.HEARTBEAT, P.ACK, rng.randrange(256)))
        crc32_store(b, k)
        out.append(bytes(b))
    return out


def _junk_sender(port, rate, seconds):
    """Process: junk at `rate` datagrams/s for `seconds` s after "go"; prints what it sent."""
    junk = junk_datagrams(8192)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = ("127.0.0.1", port)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    sent = 0
    n = len(junk)
    send = s.sendto
    while True:
        el = time.perf_counter() - t0
        if el >= seconds:
            break
        due = int(el * rate)
        while sent < due:
            try:
                send(junk[sent % n], dest)
            except OSError:
                pass
            sent += 1
        time.sleep(0.001)
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0}), flush=True)


def _junk_cell(devices, seconds, junk_per_s, keyfile):
    """Process: a cell with `devices` keyed devices (the cell bench's sender) and junk at
    junk_per_s; prints the row's figures as JSON."""
    from becomingone.bench.cell import (BOOT_BASE, TAIL_S, WARM_S, _pct, _Sender, _settle,
                                        start_keyed_cell)
    with tempfile.TemporaryDirectory(prefix="bo-junk-") as tmp:
        cell, keys = start_keyed_cell(tmp, keyfile)
        c = cell.coordinator
        th = threading.Thread(target=c.run, daemon=True)
        th.start()
        port = int(c.links[0].local_url.rsplit(":", 1)[1])
        g = j = None

        def genuine():
            n = 0
            for d, s in list(c.sessions.current.items()):
                if d in keys and s.boot_id == BOOT_BASE + d:
                    n += s.by_type.get(P.TELEMETRY, 0)
            return n
        try:
            g = _Sender(port, devices, seconds, keyfile, 1)
            _settle(lambda: len(c.sessions.current) >= devices)
            if junk_per_s:
                j = subprocess.Popen([sys.executable, "-m", "becomingone.bench.ingest", "--junk",
                                      str(port), str(junk_per_s), str(WARM_S + seconds + TAIL_S)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                if j.stdout.readline().strip() != "ready":
                    raise RuntimeError("the junk sender did not start")
            rej0 = dict(c.tally.all_rejected(c.links))
            qmax = [0]
            base = genuine()
            g.go()
            if j is not None:
                j.stdin.write("go\n")
                j.stdin.flush()
            time.sleep(WARM_S)
            a0, lags = genuine(), []
            cpu0 = sum(os.times()[:2])
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                lags.append(c.ingest_lag_us / 1e6)
                qmax[0] = max(qmax[0], c.queued_frames())
                time.sleep(0.05)
            dt = time.monotonic() - t0
            a1 = genuine()
            cpu = (sum(os.times()[:2]) - cpu0) / dt
            out = g.result()
            junk = json.loads(j.stdout.readline()) if j is not None else {"sent": 0}
            end = time.monotonic() + 5.0          # what is queued gets processed
            last = -1
            while time.monotonic() < end:
                cur = genuine()
                if cur - base >= out["sent"] or cur == last:
                    break
                last = cur
                time.sleep(0.3)
            accepted = genuine() - base
            rej = c.tally.all_rejected(c.links)
            rej_run = {k: v - rej0.get(k, 0) for k, v in sorted(rej.items()) if v - rej0.get(k, 0)}
            res = {"junk_per_s": junk_per_s, "junk_sent": junk["sent"], "devices": devices,
                   "offered_fps": round(out["sent"] / out["seconds"]),
                   "genuine_sent": out["sent"], "genuine_accepted": accepted,
                   "genuine_lost": max(0, out["sent"] - accepted),
                   "loss": round(max(0.0, 1.0 - accepted / max(1, out["sent"])), 4),
                   "accepted_fps": round((a1 - a0) / dt),
                   "lag_s": round(max(lags) if lags else 0.0, 4),
                   "lag_s_p99": round(_pct(lags, 0.99) or 0.0, 4),
                   "lag_s_max": round(max(lags) if lags else 0.0, 4),
                   "junk_rejected": rej_run,
                   "shed": {k: v for k, v in rej_run.items() if k in ("overload", "shed")},
                   "queued_frames_max": qmax[0],
                   "process_cpu": round(cpu, 3),
                   "cpu_us_per_frame": round(cpu * 1e6 / max(1.0, (a1 - a0) / dt), 2),
                   "phantom_devices": sum(1 for d in c.sessions.current if d not in keys),
                   "overload": c.tally.overload}
        finally:
            for p in (g, j):
                if p is None:
                    continue
                if isinstance(p, subprocess.Popen):
                    if p.poll() is None:
                        p.kill()                  # by PID: the junk sender we started
                    p.wait(5)
                else:
                    p.close()
            c.stop()
            th.join(30)
    print(json.dumps(res), flush=True)


def _cell_child(devices, seconds, rate, work):
    """One fresh cell process (_junk_cell): `devices` genuine devices, junk at `rate`/s."""
    from becomingone.bench.cell import _keys
    _keys(work, devices)
    keyfile = "%s/keys-%d.json" % (work, devices)
    r = subprocess.run([sys.executable, "-m", "becomingone.bench.ingest", "--junk-cell",
                        str(devices), str(seconds), str(rate), keyfile],
                       capture_output=True, text=True, timeout=300)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"junk_per_s": rate, "devices": devices,
                "error": " ".join((r.stderr or r.stdout).strip().splitlines()[-1:])}


def auto_devices(bare_fps, share=AUTO_SHARE):
    """Devices whose beats offer `share` x bare_fps frames/s (at least 40)."""
    return max(40, int(-(-share * bare_fps // DEVICE_FPS))) if bare_fps else 40


def load_rows(counts, seconds, bare_fps=None):
    """The load rows: for each device count a fresh cell with no junk; offered_fps against
    accepted_fps, genuine_lost, shed (by reason: overload, shed), lag. Beyond the cell's
    capacity the offered load cannot all get in: the row shows whether the cell sheds at the
    reader and holds its rate (fps_ratio_vs_best: accepted_fps against the best of these rows)
    rather than collapsing."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bo-bench-load-") as work:
        for n in counts:
            row = _cell_child(n, seconds, 0, work)
            if "error" not in row:
                row["ratio_vs_bare"] = round(row["accepted_fps"] / bare_fps, 4) if bare_fps else None
                row["accepted_vs_offered"] = round(row["accepted_fps"] / max(1, row["offered_fps"]), 4)
            rows.append(dict(name="load", **row))
    best = max([r["accepted_fps"] for r in rows if "accepted_fps" in r] or [0])
    for r in rows:
        if "accepted_fps" in r and best:
            r["fps_ratio_vs_best"] = round(r["accepted_fps"] / best, 4)
    return rows


def junk_rows(rates, devices, seconds, bare_fps=None):
    """The junk-mix rows: one child process per rate (each a fresh cell), the rate-0 run first
    (the clean run), ratios against it. devices: a count, or "auto" (auto_devices)."""
    if devices in (None, "auto"):
        devices = auto_devices(bare_fps)
    devices = int(devices)
    rows = []
    clean = None
    with tempfile.TemporaryDirectory(prefix="bo-bench-junk-") as work:
        for rate in sorted(rates):
            row = _cell_child(devices, seconds, rate, work)
            if "error" in row:
                rows.append(dict(name="junk-mix", **row))
                continue
            if rate == 0:
                clean = row
            if clean is not None and "genuine_accepted" in clean:
                ca = clean["genuine_accepted"] / max(1, clean["genuine_sent"])
                ra = row["genuine_accepted"] / max(1, row["genuine_sent"])
                row["accepted_ratio_vs_clean"] = round(ra / ca, 4) if ca else None
                row["fps_ratio_vs_clean"] = (round(row["accepted_fps"] / clean["accepted_fps"], 3)
                                             if clean["accepted_fps"] else None)
                row["lag_ratio_vs_clean"] = (round(row["lag_s_p99"] / clean["lag_s_p99"], 2)
                                             if clean["lag_s_p99"] else None)
            row["ratio_vs_bare"] = round(row["accepted_fps"] / bare_fps, 4) if bare_fps else None
            row["offered_ratio_vs_bare"] = (round(row["offered_fps"] / bare_fps, 4)
                                            if bare_fps else None)
            rows.append(dict(name="junk-mix", **row))
    return rows


def collect(args):
    quick = getattr(args, "quick", False)
    n = args.frames or (40000 if quick else 300000)
    devices = args.devices
    rates = [int(x) for x in (getattr(args, "junk_rates", "") or "").split(",") if x.strip()]
    jdev = getattr(args, "junk_devices", "auto")
    jsec = getattr(args, "junk_seconds", 3.0) if not quick else 2.0
    loads = [int(x) for x in (getattr(args, "load_devices", "") or "").split(",") if x.strip()]
    rows = []
    bare = _sustained(lambda n_, d_, r_: _bare(n_, d_, r_), n, devices)
    rows.append(dict(name="bare-recv", **bare))
    if getattr(args, "only_junk", False):
        return rows + junk_rows(rates, jdev, jsec, bare["frames_per_s"]) + \
            load_rows(loads, jsec, bare["frames_per_s"])
    if mmsg.available():
        rows.append(dict(name="bare-recvmmsg", **_sustained(_bare_mmsg, n, devices)))
    ours = _sustained(_ours, n, devices)
    ours["ratio_vs_bare"] = round(ours["frames_per_s"] / bare["frames_per_s"], 3) if bare["frames_per_s"] else None
    rows.append(dict(name="becomingone", **ours))
    try:
        bm = importlib.import_module("becomingone.bench.master")
        rows += bm.collect(args)
    except ModuleNotFoundError:
        pass
    if not args.no_footprint:
        beats = 600 if quick else 2400
        fp = _footprint(beats)
        if not quick and "rss_mb_100_devices" in fp:
            fp2 = _footprint(beats, 2.0)
            fp["rss_mb_100_devices_fine_span_2s"] = fp2.get("rss_mb_100_devices")
            fp["rss_mb_100_devices_no_http"] = _footprint(beats, http=False).get("rss_mb_100_devices")
        rows.append(dict(name="footprint", **fp))
    if rates:
        rows += junk_rows(rates, jdev, jsec, bare["frames_per_s"])
    if loads:
        rows += load_rows(loads, jsec, bare["frames_per_s"])
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "--junk":
        _junk_sender(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "--junk-cell":
        _junk_cell(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "--gen":
        _generator(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif sys.argv[1] == "--footprint":
        _footprint_child(int(sys.argv[2]), int(sys.argv[3]),
                         (float(sys.argv[4]) or None) if len(sys.argv) > 4 else None,
                         http=sys.argv[5] != "no-http" if len(sys.argv) > 5 else True)
