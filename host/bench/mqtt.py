"""`becomingone bench mqtt [--json] [--quick]`: the MQTT bridge (host/mqtt/bridge.py)
against a real Mosquitto on 127.0.0.1 (host/bench/mosquitto.py), at 100 devices.

Rows
  paho-publish      the peer: a bare paho client publishing pre-encoded state JSON (QoS 0) to 100
                    topics in a loop; msgs_per_s = publish calls/s; received_per_s = what a
                    subscriber in another process got
  bridge-round      the bridge's state path for a 100-device snapshot (JSON per device + paho
                    publish), called in a loop; msgs_per_s and ratio_vs_paho
  live-*            a real coordinator, 100 devices sending 20 TELEMETRY/s each (2000 frames/s),
                    for 8 s: CPU (share of one core, from /proc per thread) of the processing
                    thread and of the bridge's worker + paho network threads, without the
                    bridge and with it at interval 10 s (default) and 0.05 s (2000 states/s
                    asked); states_received_per_s at a subscriber process; snapshot_us = the
                    processing thread's time for one device snapshot (taken every 0.25 s)
  ingest-*          frames/s one coordinator ingests from 100 devices over loopback UDP
                    (host/bench/ingest.py's generator and loss rule) without the bridge, with
                    it at the default interval (10 s) and at 0.05 s; runs interleaved, best of
                    two per setting; ratio_vs_off
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from becomingone.bench.ingest import _Gen, _sustained, wait_processed
from becomingone.bench.mosquitto import Broker, have_mosquitto
from becomingone.cell import Cell
from becomingone.config import load_config
from becomingone.errors import UserError
from becomingone.mqtt.bridge import MqttBridge
from shared import protocol as P

DEVICES = 100


def add_arguments(p):
    p.add_argument("--frames", type=int, default=None, help="ingest frames per run (default 200000)")


def _state(dev):
    return json.dumps({"coherence": 0.6104, "threat": 0.0015, "decision": "NOOP",
                       "quarantined": False, "collapse": False, "beat": 123456 + dev,
                       "online": True}, separators=(",", ":")).encode()


class _Sub:
    """A subscriber in another process counting messages on a topic filter."""

    def __init__(self, port, topic):
        self.p = subprocess.Popen([sys.executable, "-m", "becomingone.bench.mqtt", "--sub", str(port),
                                   topic], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not start")

    def count(self):
        self.p.stdin.write("count\n")
        self.p.stdin.flush()
        return int(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def _sub_main(port, topic):
    # paho-mqtt: loaded only when an MQTT bridge is configured
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    n = [0]
    ok = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, ud, fl, rc, pr: (cl.subscribe(topic, 0), ok.set())
    c.on_subscribe = lambda *a: ok.set()

    def on_message(cl, ud, m):
        n[0] += 1
    c.on_message = on_message
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    ok.wait(10)
    time.sleep(0.2)
    print("ready", flush=True)
    for line in sys.stdin:
        print(n[0], flush=True)


def _rate(sub, seconds):
    a, t0 = sub.count(), time.perf_counter()
    time.sleep(seconds)
    return (sub.count() - a) / (time.perf_counter() - t0)


def _paho_peer(port, n):
    # paho-mqtt: loaded only when an MQTT bridge is configured
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    sub = _Sub(port, "peer/#")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    topics = ["peer/device/%d/state" % d for d in range(1, DEVICES + 1)]
    payloads = [_state(d) for d in range(1, DEVICES + 1)]
    before = sub.count()
    t0 = time.perf_counter()
    for i in range(n):
        k = i % DEVICES
        c.publish(topics[k], payloads[k], qos=0)
    dt = time.perf_counter() - t0
    end = time.time() + 10
    got = before
    while time.time() < end:
        time.sleep(0.2)
        cur = sub.count()
        if cur - before >= n or cur == got:
            got = cur
            break
        got = cur
    recv_dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    sub.close()
    return {"msgs_per_s": round(n / dt), "received_per_s": round((got - before) / recv_dt),
            "received": got - before, "sent": n}


def _bridge_round(port, rounds):
    cfg = load_config(overrides={"becomingone.name": "bench", "integrations.mqtt.enabled": True,
                                 "integrations.mqtt.host": "127.0.0.1",
                                 "integrations.mqtt.port": port})
    b = MqttBridge(None, cfg.integrations.mqtt, "bench")
    b.client.connect("127.0.0.1", port, 60)
    b.client.loop_start()
    end = time.time() + 10
    while not b.connected and time.time() < end:
        time.sleep(0.01)
    snap = [(d, True, "emu", "0.1.0", (40000, 100, 0, 1000 + d)) for d in range(1, DEVICES + 1)]
    b._resync.clear()
    b._publish_snapshot(snap, True)          # discovery + availability once, unmeasured
    p0 = b.counters["states_published"]
    t0 = time.perf_counter()
    for _ in range(rounds):
        b._publish_snapshot(snap, True)
    dt = time.perf_counter() - t0
    n = b.counters["states_published"] - p0
    b._stop.set()
    b.client.disconnect()
    b.client.loop_stop()
    return {"msgs_per_s": round(n / dt), "sent": n}


def _hellos(port, boot=lambda d: 0x1000 + d):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hello = {"board": "emu", "fw_major": 0, "fw_minor": 1, "fw_patch": 0, "capabilities": 0,
             "fs_hz": 1000, "period_us": 4211, "phase_step": 2147, "lag_samples": 10,
             "adc_bits": 12, "sum_shift": 0, "pow_bits": 16, "telemetry_every": 1,
             "spb_max": 32, "period_min_us": 500, "reset_cause": 1, "boot_flags": 0,
             "kairos_decim": 4, "counts_per_unit_q4": 2048, "nonce": bytes(16)}
    for d in range(1, DEVICES + 1):
        s.sendto(P.encode(P.HELLO, hello, d, boot(d), 0), ("127.0.0.1", port))
    s.close()


def _coordinator(tmp, over):
    o = {"data_dir": tmp, "admission.rate.capacity": 1e9, "admission.rate.refill": 1e9,
         "ledger.pulse_summary_every": 0}
    o.update(over)
    cell = Cell(load_config(overrides=o), links=["udp://127.0.0.1:0"], control=False,
                http=False).start()
    th = threading.Thread(target=cell.run, daemon=True)
    th.start()
    return cell, th, int(cell.coordinator.links[0].local_url.rsplit(":", 1)[1])


def _thread_cpu_s(tid):
    """CPU seconds (user + system) of one thread of this process (Linux /proc)."""
    try:
        with open("/proc/self/task/%d/stat" % tid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _live(port, seconds, interval):
    """A coordinator with 100 devices sending 20 TELEMETRY/s each (2000 frames/s) for
    `seconds`, the bridge at `interval` (None: no bridge): CPU of the processing thread and of
    the bridge's two threads, states/s a subscriber process received."""
    with tempfile.TemporaryDirectory() as tmp:
        cell, th, udp = _coordinator(tmp, _mqtt_over(port, interval) if interval else {})
        c, bridge = cell.coordinator, cell.mqtt
        try:
            _hellos(udp)
            time.sleep(0.3)
            g = _Gen(udp, int(DEVICES * 20 * (seconds + 3)), DEVICES, DEVICES * 20)
            g.warm()
            g.go()
            time.sleep(1.5)
            sub = _Sub(port, "becomingone/bench/device/+/state")
            tids = [th.native_id]
            if bridge is not None:
                tids += [bridge._worker.native_id, bridge.client._thread.native_id]
            cpu0 = [_thread_cpu_s(x) for x in tids]
            n0, w0 = sub.count(), time.perf_counter()
            time.sleep(seconds)
            cpu1 = [_thread_cpu_s(x) for x in tids]
            got = (sub.count() - n0) / (time.perf_counter() - w0)
            wall = time.perf_counter() - w0
            sub.close()

            def timed():
                t0 = time.perf_counter()
                for _ in range(20):
                    c.operator.device_states()
                return (time.perf_counter() - t0) / 20
            snap_s = min(c.call(timed) for _ in range(5))
            g.result()
            st = bridge.stats() if bridge is not None else {}
        finally:
            c.stop()
            th.join(30)
    use = [(b - a) / wall for a, b in zip(cpu0, cpu1)]
    row = {"interval_s": interval, "states_received_per_s": round(got),
           "proc_thread_cpu": round(use[0], 4)}
    if interval:
        row.update(states_asked_per_s=round(DEVICES / interval, 1),
                   bridge_threads_cpu=round(use[1] + use[2], 4),
                   ratio_bridge_vs_proc_thread=round((use[1] + use[2]) / use[0], 3) if use[0] else None,
                   snapshot_us=round(snap_s * 1e6, 1),
                   snapshot_share_of_proc_thread=round(snap_s / min(0.25, interval) / use[0], 4)
                   if use[0] else None,
                   errors=st.get("errors"), devices=st.get("devices"))
    return row


def _mqtt_over(port, interval):
    return {"becomingone.name": "bench", "integrations.mqtt.enabled": True,
            "integrations.mqtt.host": "127.0.0.1", "integrations.mqtt.port": port,
            "integrations.mqtt.interval": interval}


def _ingest(over):
    """bench_ingest's coordinator run, with config overrides and 100 devices saying HELLO."""

    def run(n, devices, rate):
        with tempfile.TemporaryDirectory() as tmp:
            cell, th, port = _coordinator(tmp, over)
            c = cell.coordinator
            try:
                _hellos(port)
                time.sleep(0.5)
                g = _Gen(port, n, devices, rate)
                g.warm()
                cn = c.counters

                def done():
                    return cn["frames_accepted"] + cn["frames_rejected"]
                base_acc, base = cn["frames_accepted"], done()
                t0 = g.go()
                t_last = wait_processed(done, base, n, t0)
                gen = g.result()
                acc = cn["frames_accepted"] - base_acc
            finally:
                c.stop()
                th.join(30)
        return acc, max(1e-9, t_last - t0), gen
    return run


def collect(args):
    if not have_mosquitto():
        raise UserError("bench mqtt needs the mosquitto broker (Debian package mosquitto)")
    quick = getattr(args, "quick", False)
    n = args.frames or (40000 if quick else 200000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        b = Broker(tmp).start()
        try:
            peer = _paho_peer(b.port, 20000 if quick else 100000)
            rows.append(dict(name="paho-publish", **peer))
            br = _bridge_round(b.port, 50 if quick else 300)
            br["ratio_vs_paho"] = round(br["msgs_per_s"] / peer["msgs_per_s"], 3)
            rows.append(dict(name="bridge-round", **br))
            secs = 3.0 if quick else 8.0
            for name, interval in (("live-no-bridge", None), ("live-bridge-10s", 10.0),
                                   ("live-bridge-0.05s", 0.05)):
                rows.append(dict(name=name, **_live(b.port, secs, interval)))
            # interleaved, best of `reps` per setting (the cores are shared with other work)
            settings = (("ingest-off", {}), ("ingest-bridge-10s", _mqtt_over(b.port, 10.0)),
                        ("ingest-bridge-0.05s", _mqtt_over(b.port, 0.05)))
            best = {}
            for _ in range(1 if quick else 2):
                for name, over in settings:
                    row = _sustained(_ingest(over), n, DEVICES)
                    if name not in best or row["frames_per_s"] > best[name]["frames_per_s"]:
                        best[name] = row
            off = best["ingest-off"]["frames_per_s"]
            for name, _ in settings:
                row = best[name]
                row["ratio_vs_off"] = round(row["frames_per_s"] / off, 3)
                rows.append(dict(name=name, **row))
        finally:
            b.stop()
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "--sub":
        _sub_main(int(sys.argv[2]), sys.argv[3])
