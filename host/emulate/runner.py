"""`becomingone emulate`: the host (in this process) plus N device processes running the real
firmware, with faults injected by link proxies.

    emu = Emulation(devices=3, duration=20, transport="udp", runtime="micropython",
                    faults=parse_faults("loss=0.05"), data_dir="var/emulate")
    summary = emu.run(live=None)      # blocks for `duration` s (or until stop()), returns the summary

Device i (1-based) has device id i; with transport "udp" the last `serial_devices` of them use
a pseudo-terminal serial link instead (pyserial on the host side). Every device gets a key
(provisioned into the host keystore and a key file in the data folder), so frames are tagged and
a forged frame is caught. The data folder holds the host's data (ledger, sessions, memory), the
device logs (logs/device-N.log) and the summary.
"""
import collections
import os
import shutil
import threading
import time

from becomingone.cell import Cell
from becomingone.config import load_config
from becomingone.emulate.devices import (BROADBAND_ONLY, DeviceProcess, Flooder, Forger,
                                         sensor_faults)
from becomingone.emulate.faults import FaultSpec
from becomingone.emulate.firmware import build_firmware
from becomingone.emulate.proxy import SerialFaultProxy, UdpFaultProxy
from becomingone.errors import UserError
from becomingone.ingest.keystore import Keystore
from becomingone.ledger import Ledger
from becomingone.ledger.merkle import verify_inclusion
from becomingone.util.atomic import write_json
from shared import protocol as P
from shared.auth import Auth

FLOOD_ID_BASE = 60000   # flooding senders get their own keyed device ids


class _AnyTag:
    """An Auth stand-in that takes every tag: a keyed device's frames are tagged with its
    session key (the handshake's, which needs the host's nonce: this observer sees only what
    the device sends). The frames it sees come from the device's own side of the proxy, before
    link faults, so the tag proves nothing here; the CRC and every field are still checked."""

    def get(self, device_id):
        return self

    def verify(self, data, n):
        return True


class _WitnessObserver:
    """Decodes the frames devices emit (before link faults) and records every WITNESS."""

    def __init__(self, keys):
        self.auth = {d: _AnyTag() for d in keys}
        self.device_auth = {d: Auth(k) for d, k in keys.items()}
        self.sent = set()           # (device, boot, witness_id)
        self.kinds = {}             # (device, boot, witness_id) -> WITNESS kind code
        self.frames = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, data):
        try:
            f = P.decode(bytes(data), auth=self.auth)
        except Exception:
            return
        if f.type == P.WITNESS and f.auth:
            k = self.device_auth.get(f.device_id)
            if k is not None and k.verify(data, len(data) - P.CRC_LEN - P.TAG_LEN):
                # tagged with the device key: sent while its handshake was pending, which the
                # host does not take; the device sends it again under the session key
                return
        with self.lock:
            self.frames[f.device_id] += 1
            if f.type == P.WITNESS:
                key = (f.device_id, f.boot_id, f.fields["witness_id"])
                self.sent.add(key)
                self.kinds[key] = f.fields["kind"]


class Emulation:
    """A host Cell plus N firmware processes and their link proxies: owns the data folder
    (emptied at start), the device processes, the fault injectors and the summary. Raises
    UserError for bad options or a data folder holding a real coordinator's ledger."""
    def __init__(self, devices=3, duration=60.0, transport="udp", runtime="micropython",
                 faults=None, data_dir=None, serial_devices=0, config_overrides=None,
                 pow_bits=None, device_args=(), omega=0.0, tau_bar=0.0, http=None,
                 sensor_file=None):
        if devices < 1 or devices > 200:
            raise UserError("--devices must be 1..200, got %d" % devices)
        if transport not in ("udp", "serial"):
            raise UserError("--transport must be udp or serial, got %r" % (transport,))
        if runtime not in ("micropython", "cpython", "rp2040"):
            raise UserError("--runtime must be micropython, cpython or rp2040, got %r" % (runtime,))
        if not 0 <= serial_devices <= devices:
            raise UserError("--serial-devices must be 0..%d, got %d" % (devices, serial_devices))
        self.n = devices
        (faults or FaultSpec()).check_devices(devices)
        self.duration = duration
        self.transport = transport
        self.runtime = runtime
        self.faults = faults or FaultSpec()
        # rp2040: emulated Picos, whose link is their USB CDC serial port (host/rp2040/emulate.py)
        self.serial_count = devices if transport == "serial" or runtime == "rp2040" \
            else serial_devices
        self.data_dir = os.path.abspath(data_dir or os.path.join("var", "emulate"))
        self.pow_bits = pow_bits
        self.http = http        # the Cell's http argument (becomingone/cell.py): None, False, "HOST:PORT"
        self.device_args = list(device_args)
        # raw uint16 counts at the board's f_s (device/main.py --sensor-file; `becomingone
        # replay` writes one from a recording): every device samples it instead of its
        # synthetic machine, and stops at its end
        self.sensor_file = os.path.abspath(sensor_file) if sensor_file else None
        if self.sensor_file and not os.path.isfile(self.sensor_file):
            raise UserError("--sensor-file %s: no such file (raw little-endian uint16 ADC counts "
                            "at the board's sample rate)" % sensor_file)
        # KAIROS: omega and tau_bar reach the host config and the devices alike; at their
        # defaults (omega 0, tau_bar 0) the devices run their own defaults: omega 0 and a lag
        # learned from the machine (one period).  At the spec's 2 rad/s a window of W seconds
        # has C <= sinc^2(omega*W/2): no window longer than 0.39 s could reach I_c = 0.95.
        if omega < 0 or not 0 <= tau_bar <= 0.5:
            raise UserError("--omega must be >= 0 and --tau-bar in [0, 0.5] s, 0 = learned "
                            "(got %r, %r)" % (omega, tau_bar))
        self.omega = float(omega)
        self.tau_bar = float(tau_bar)
        overrides = {"data_dir": self.data_dir, "kairos.omega": self.omega,
                     "kairos.tau_bar": self.tau_bar}
        if pow_bits is not None:
            # the host requires the difficulty its devices mine (else it refuses their WITNESS
            # records and pushes its own default back to them at every HELLO)
            overrides["admission.pow_bits"] = int(pow_bits)
        overrides.update(config_overrides or {})
        self.cfg = load_config(overrides=overrides)
        self.cell = None           # becomingone/cell.py: the host, HTTP as asked
        self.coordinator = None    # the cell's coordinator
        self.devices = []
        self.proxies = {}
        self.extras = []           # flooders and forgers
        self.observer = None
        self._thread = None
        self._stop = threading.Event()
        self.started = None
        self.events_done = []
        self.final_status = None

    # ---------------------------------------------------------------- setup
    def _fresh_data_dir(self):
        # an emulation starts from an empty folder; a ledger there that no emulation made (no
        # logs/ folder, no summary.json: a real coordinator's data) is never deleted
        d = self.data_dir
        if os.path.exists(os.path.join(d, "ledger.sqlite")) and not (
                os.path.isdir(os.path.join(d, "logs")) or os.path.exists(os.path.join(d, "summary.json"))):
            raise UserError("%s holds a ledger that is not an emulation's (no logs/ or summary.json "
                            "there): an emulation empties its data folder first, so choose another "
                            "--data (default var/emulate)" % d)
        os.makedirs(self.data_dir, exist_ok=True)
        for name in os.listdir(self.data_dir):
            if name.startswith(("ledger", "sessions", "devconfig", "memory", "status", "keystore",
                                "summary")):
                p = os.path.join(self.data_dir, name)
                if os.path.isfile(p):
                    os.unlink(p)
        shutil.rmtree(os.path.join(self.data_dir, "firmware"), ignore_errors=True)
        for sub in ("logs", "keys"):
            os.makedirs(os.path.join(self.data_dir, sub), exist_ok=True)
            for name in os.listdir(os.path.join(self.data_dir, sub)):
                os.unlink(os.path.join(self.data_dir, sub, name))

    def _provision_keys(self, keystore, ids):
        keys = {}
        for d in ids:
            k = keystore.add(d, replace=True)
            keys[d] = k
            path = os.path.join(self.data_dir, "keys", "device-%d.key" % d)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(k.hex())
        return keys

    def start(self):
        self._fresh_data_dir()
        n_udp = self.n - self.serial_count
        serial_ids = list(range(n_udp + 1, self.n + 1))
        serial_proxies = {}
        # keys first: the coordinator loads the keystore when it starts
        ks = Keystore(self.cfg.keystore_path())
        flood_ids = [FLOOD_ID_BASE + d for d in self.faults.flood]
        keys = self._provision_keys(ks, list(range(1, self.n + 1)) + flood_ids)
        self.observer = _WitnessObserver({d: keys[d] for d in range(1, self.n + 1)})
        for d in serial_ids:
            serial_proxies[d] = SerialFaultProxy(biterr=self.faults.biterr,
                                                 seed=self.faults.seed + d,
                                                 observer=self.observer).start()
        links = (["udp://127.0.0.1:0"] if n_udp or self.faults.flood or self.faults.forge else [])
        links += [serial_proxies[d].host_path for d in serial_ids]
        self.cell = Cell(self.cfg, links=links, control=True, http=self.http).start()
        self.coordinator = self.cell.coordinator
        host_addr = None
        if links and links[0].startswith("udp://"):
            u = self.coordinator.links[0]
            host_addr = ("127.0.0.1", u.port)
        log_dir = os.path.join(self.data_dir, "logs")
        main = None
        if self.runtime == "micropython":
            main = build_firmware(os.path.join(self.data_dir, "firmware"))
        elif self.runtime == "rp2040":
            from becomingone.rp2040.emulate import Rp2040Device, firmware_modules
            chip_modules = firmware_modules()
        for d in range(1, self.n + 1):
            if d in serial_proxies:
                proxy = serial_proxies[d]
                url = proxy.device_path
            else:
                proxy = UdpFaultProxy(host_addr, faults=self.faults, seed=self.faults.seed + d,
                                      observer=self.observer).start()
                url = proxy.url
            self.proxies[d] = proxy
            key_file = os.path.join(self.data_dir, "keys", "device-%d.key" % d)
            lag = self.cfg.lag_samples()
            extra = []
            if self.omega:
                extra += ["--omega", repr(self.omega)]
            if lag:
                extra += ["--lag", str(lag)]
            if self.sensor_file:
                extra += ["--sensor-file", self.sensor_file]
            elif d % 2 == 0:
                extra += ["--signal", BROADBAND_ONLY]
            if self.runtime == "rp2040":
                dev = Rp2040Device(d, d, url, log_dir, chip_modules, key_file=key_file,
                                   fault_events=self.faults.fault, pow_bits=self.pow_bits,
                                   extra=self.device_args, omega=self.omega or None,
                                   lag=lag or None)
            else:
                dev = DeviceProcess(d, d, url, self.runtime, log_dir, key_file=key_file,
                                    faults=sensor_faults(d, self.faults.fault),
                                    pow_bits=self.pow_bits, extra=extra + self.device_args,
                                    main=main)
            self.devices.append(dev.start())
        for d in self.faults.flood:
            fid = FLOOD_ID_BASE + d
            self.extras.append(Flooder(host_addr, fid, keys[fid]))
        for d in self.faults.forge:
            self.extras.append(Forger(host_addr, d, capture=self.proxies.get(d)))
        for x in self.extras:
            x.start()
        self._thread = threading.Thread(target=self.coordinator.run, name="coordinator",
                                        daemon=True)
        self._thread.start()
        self.started = time.monotonic()
        self.started_wall = time.time()     # summary "started": fault times are relative to it
        return self

    # ---------------------------------------------------------------- running
    def elapsed(self):
        return 0.0 if self.started is None else time.monotonic() - self.started

    def _events(self):
        t = self.elapsed()
        for dev, at in self.faults.reboot:
            if (dev, at) not in self.events_done and t >= at and dev <= self.n:
                self.devices[dev - 1].reboot()
                self.events_done.append((dev, at))

    def stop(self):
        self._stop.set()

    def wait(self, live=None, interval=0.5):
        """Run until the duration ends or stop(); `live(emu)` is called every interval."""
        end = None if self.duration is None else self.started + self.duration
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                self._events()
                for dev in self.devices:   # a crashed firmware is restarted, like a watchdog
                    if not dev.alive():
                        dev.start()
                if live is not None:
                    live(self)
                self._stop.wait(min(interval, max(0.01, (end - now) if end else interval)))
        except KeyboardInterrupt:
            pass

    def committed(self, key):
        """True once the coordinator has committed the WITNESS (device, boot, witness_id)."""
        c = self.coordinator
        return c is not None and c.call(lambda: key in c.witness.done)

    def status(self):
        c = self.coordinator
        return c.status() if c is not None else {}

    def shutdown(self):
        for x in self.extras:
            x.stop()
        for dev in self.devices:
            dev.stop()
            if hasattr(dev, "close"):
                dev.close()
        c = self.coordinator
        if c is not None:
            time.sleep(0.3)            # let the last frames and commits arrive
            c.stop()
            if self._thread is not None:
                self._thread.join(timeout=30)
            self.final_status = c.status()
        for p in self.proxies.values():
            p.stop()

    def run(self, live=None):
        self.start()
        try:
            self.wait(live=live)
        finally:
            self.shutdown()
        return self.summary()

    # ---------------------------------------------------------------- results
    def ledger_facts(self):
        path = self.cfg.ledger_path()
        with Ledger(path) as led:
            res = led.verify()
            in_ledger = {}
            kinds = collections.Counter()
            host_collapses = 0
            for e in led.entries():
                data = e.data
                k = data.get("kind")
                kinds[k] += 1
                if k == "witness" and "witness_id" in data:
                    in_ledger[(data["device"], data["boot"], data["witness_id"])] = e.index
                elif k == "collapse":
                    host_collapses += 1
            size = led.size
            proofs_ok = 0
            for key, index in in_ledger.items():
                pr = led.inclusion_proof(index)
                if verify_inclusion(pr["index"], pr["tree_size"], bytes.fromhex(pr["leaf_hash"]),
                                    [bytes.fromhex(h) for h in pr["path"]],
                                    bytes.fromhex(pr["root"])):
                    proofs_ok += 1
        return {"verified": bool(res.ok), "first_bad": res.first_bad, "entries": size,
                "witness_index": in_ledger, "kinds": dict(kinds),
                "host_collapses": host_collapses, "proofs_ok": proofs_ok}

    def summary(self):
        st = self.final_status or self.status()
        reports = [r for dev in self.devices for r in dev.reports]
        p50s = [r["lateness_us"]["p50"] for r in reports if r.get("lateness_us")]
        p99s = [r["lateness_us"]["p99"] for r in reports if r.get("lateness_us")]
        decisions = collections.Counter()
        dev_collapses = 0
        for r in reports:
            decisions.update(r.get("decisions", {}))
            dev_collapses += r.get("collapses", 0)
        # a boot ended by reboot=D@T is killed and never reports its count: where a link proxy
        # saw the device's frames (before faults), its count covers every boot
        seen = self.observer.frames if self.observer else {}
        frames_sent = sum(max(sum(r.get("link", {}).get("tx_frames", 0) for r in dev.reports),
                              seen.get(dev.device_id, 0)) for dev in self.devices)
        lf = self.ledger_facts()
        sent = self.observer.sent if self.observer else set()
        witness_in_ledger = sum(1 for k in sent if k in lf["witness_index"])
        missing = sorted(k for k in sent if k not in lf["witness_index"])
        out = {
            "runtime": self.runtime,
            "transport": self.transport,
            "devices": self.n,
            "serial_devices": self.serial_count,
            "started": getattr(self, "started_wall", None),
            "duration_s": round(self.elapsed(), 2),
            "faults": self.faults.as_dict(),
            "devices_seen": st.get("devices_seen", 0),
            "frames_sent": frames_sent,
            "frames_received": st.get("frames_received", 0),
            "frames_accepted": st.get("frames_accepted", 0),
            "frames_rejected": st.get("frames_rejected", {}),
            "frames_awaiting_handshake": st.get("frames_awaiting_handshake", 0),
            "lateness_us": {"p50": sorted(p50s)[len(p50s) // 2] if p50s else None,
                            "p99": max(p99s) if p99s else None},
            "collapses": {"emissary": dev_collapses, "sync": lf["host_collapses"],
                          "total": dev_collapses + lf["host_collapses"]},
            "decisions": dict(decisions),
            "witness_sent": len(sent),
            "witness_in_ledger": witness_in_ledger,
            "witness_missing": [list(k) for k in missing[:20]],
            "witness_proofs_ok": lf["proofs_ok"],
            "ledger_entries": lf["entries"],
            "ledger_kinds": lf["kinds"],
            "ledger_verified": lf["verified"],
            "ledger_first_bad": lf["first_bad"],
            "device_boots": {d.device_id: d.boots for d in self.devices},
            "sessions": st.get("sessions"),
            "proxies": {d: p.stats() for d, p in self.proxies.items()},
            "extras": [{"name": x.name, "sent": getattr(x, "sent", None),
                        "forged_sent": getattr(x, "forged_sent", None),
                        "replayed_sent": getattr(x, "replayed_sent", None)} for x in self.extras],
            "device_reports": reports,
            "data_dir": self.data_dir,
        }
        return out


def write_summary(summary, path):
    write_json(path, summary, indent=2, sort_keys=True, default=str)
