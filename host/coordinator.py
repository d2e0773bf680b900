"""The host coordinator: links -> decode -> admission -> session -> Master / ledger / devices.

    c = Coordinator(cfg, links=["udp://127.0.0.1:0"])   # cfg: host.config.Config (data_dir set)
    c.start()                # opens links (workers under supervisors), control socket, ledger
    c.run(duration=None)     # processing loop in this thread until stop() or the duration
    c.stop()                 # clean shutdown: drain, flush the ledger, ACK what committed
    c.status() -> dict       # what `becomingone status` / the emulator summary show
    c.call(fn, *args)        # run fn in the processing thread (thread-safe), returns its result

Threads: one reader per link (supervised, host/supervisor.py) feeding `inbox`; the processing
loop (the caller of run()) owns sessions, Master and device state; the ledger's writer thread
commits entries and its callbacks post back to `inbox` (a WITNESS is ACKed only after its
entry is committed); the control socket thread posts commands to `inbox` too.
Data folder layout: docs/HOST.md. WITNESS handling: host/coordinator_witness.py; operator actions,
status and control commands: host/coordinator_ops.py.
"""
import collections
import os
import queue
import threading
import time
from concurrent.futures import CancelledError, Future

from host.admission import Admission
from host.coordinator_ops import OperatorMixin
from host.coordinator_witness import WITNESS_LAYER, WitnessMixin
from host.control import SOCKET_NAME, ControlServer
from host.devconfig import DeviceConfigs, device_defaults, hello_limits, to_pairs
from host.errors import UserError
from host.ingest import Ingest, _now_us
from host.keystore import Keystore
from host.ledger import Ledger
from host.links import make_link
from host.sessions import Sessions
from host.supervisor import Supervisor
from host.wire import Receiver, decode_telemetry
from shared import protocol as P

__all__ = ["Coordinator", "NotRunning", "WITNESS_LAYER"]

TIME_SYNC_EVERY_S = 10.0
TICK_S = 0.05
MAX_INBOX = 2048          # queued receive batches; beyond this a link drops (counted "overload")


class NotRunning(RuntimeError):
    """Coordinator.call(..., loop_only=True) while the processing loop does not run."""


class Coordinator(WitnessMixin, OperatorMixin):
    def __init__(self, cfg, links=None, ready_file=None, control=True, master=True, http=None):
        self.cfg = cfg
        self._http_arg = http     # host/http: None = config + BECOMINGONE_HTTP, False = off, "HOST:PORT"
        self.http = None          # host/http/server.py HttpServer while it serves
        self.data_dir = os.path.abspath(cfg.data_path())
        os.makedirs(self.data_dir, exist_ok=True)
        self.ready_file = ready_file
        self.link_urls = list(links if links else cfg.links)
        self.links = [make_link(u) for u in self.link_urls]
        self.counters = collections.Counter()
        self.rejected = collections.Counter()
        self.overload_frames = 0
        self._tel_seen = {}       # device -> last TELEMETRY record handed to the sync layer
        self._proc_thread = None  # the thread running run(), while it runs
        self.inbox = queue.SimpleQueue()
        self.stop_event = threading.Event()
        self.started = None
        self.keystore = Keystore(cfg.keystore_path())
        a = cfg.admission
        self.admission = Admission(self.keystore, policy=a.unknown_devices, pow_bits=a.pow_bits,
                                   pow_required=cfg.security.intrinsic,
                                   rate_capacity=a.rate.capacity, rate_refill=a.rate.refill,
                                   transport=cfg.security.transport)
        self.receiver = Receiver(replay=False)
        self.receiver.auth = self.admission.auths
        self.sessions = Sessions(os.path.join(self.data_dir, "sessions.json"),
                                 timeout_s=cfg.devices.session_timeout_s,
                                 on_new_session=self._on_new_session)
        self.devconfig = DeviceConfigs(device_defaults(cfg),
                                       os.path.join(self.data_dir, "devconfig.json"),
                                       send=self._send_config, ledger_append=self._config_record,
                                       limits=self._device_limits)
        self.core = None          # host/integration.py: sync layer, witnessing, memory
        self.tel_history = None   # host/telemetry_history.py: telemetry/heartbeat rows in memory
        self.master = None
        if master and cfg.master.enabled:
            from host.master import Master
            self.master = Master.from_config(cfg)
        self.ledger = None
        self.ingest = Ingest(self)
        self.supervisors = []
        self.control = None
        self._want_control = control
        self.witness_pending = set()
        self.witness_done = collections.OrderedDict()      # (dev, boot, wid) -> ledger index
        self.model_version = 0
        self.health = {}
        self._last_rx_us = None
        self._ingest_lag_us = 0
        self._next = collections.defaultdict(float)
        self.pulse_every = int(cfg.ledger.pulse_summary_every)
        self.mqtt = None          # host/integrations/mqtt.py (integrations.mqtt.enabled)
        self.mesh = None          # host/coordinator_mesh.py (sync.mesh_enabled)
        self._t0_us = _now_us()

    # ------------------------------------------------------------------ lifecycle
    def start(self, integration=True):
        from host.http import HttpServer, resolve_settings
        settings = resolve_settings(self.cfg, self._http_arg)
        # bound first: a port in use (or a missing token) fails before anything else opens
        self.http = HttpServer(self, settings) if settings is not None else None
        try:
            self._start(integration)
        except BaseException:
            if self.http is not None:
                self.http.close()
                self.http = None
            raise
        if self.http is not None:
            self.http.start()
        return self

    def _start(self, integration):
        cfg = self.cfg
        if cfg.integrations.mqtt.enabled:      # checks its files first: ConfigError, nothing open
            from host.integrations.mqtt import MqttBridge
            self.mqtt = MqttBridge.from_config(self)
        self.ledger = Ledger(cfg.ledger_path(), checkpoint_every=cfg.ledger.checkpoint_every or None,
                             group_commit_ms=cfg.ledger.group_commit_ms, synchronous=cfg.ledger.synchronous)
        self._recall_witnesses()
        if integration:
            from host.integration import Integration
            self.core = Integration(cfg, self.master, ledger_submit=self._ledger_submit)
            from host.telemetry_history import TelemetryHistory
            self.tel_history = TelemetryHistory.from_config(cfg, self.core.memory)
        if cfg.sync.mesh_enabled:             # TLS material checked first: UserError naming the fix
            from host.coordinator_mesh import MeshBridge
            try:
                self.mesh = MeshBridge(self).start()      # own thread and asyncio loop
            except BaseException:
                if self.core is not None:
                    self.core.close()
                self.ledger.close()
                raise
        for link in self.links:
            try:
                link.open()
            except OSError as e:
                if link.datagram:
                    if self.mesh is not None:
                        self.mesh.stop()
                    self.ledger.close()
                    for other in self.links:
                        other.close()
                    raise UserError(str(e)) from None
                link.wanted = True        # a serial board not plugged in yet: keep trying
                link.last_error = str(e)
        for link in self.links:
            sup = Supervisor("link " + link.local_url, self._reader(link), base_delay=0.05,
                             max_delay=5.0, on_error=self._worker_error)
            self.supervisors.append(sup.start())
        if self._want_control:
            self.control = ControlServer(os.path.join(self.data_dir, SOCKET_NAME),
                                         self._control).start()
        self.started = time.time()
        if self.mqtt is not None:
            self.mqtt.start()                 # own threads; never blocks processing
        self.write_status()
        if self.ready_file:
            self._atomic_json(self.ready_file, self.ready_info())
        return self

    def ready_info(self):
        return {"pid": os.getpid(), "data_dir": self.data_dir,
                "links": [l.local_url for l in self.links],
                "control": os.path.join(self.data_dir, SOCKET_NAME) if self.control else None,
                "ledger": self.ledger.path if self.ledger else None,
                "http": self.http.url if self.http is not None else None}

    def _worker_error(self, name, err):
        self.counters["worker_crashes"] += 1

    def _reader(self, link):
        inbox = self.inbox

        def work(stop):
            block = getattr(link, "block_mode", False)
            while not stop.is_set():
                got = link.recv_block(0.1) if block else link.recv(0.1)
                if not got:
                    continue
                if inbox.qsize() > MAX_INBOX:     # processing is behind: shed load, counted
                    self.overload_frames += len(got)   # only this thread writes it
                    continue
                inbox.put(("rxb" if block else "rx", link, got, _now_us()))
        return work

    def run(self, duration=None):
        """Process until stop() (or SIGINT/SIGTERM via the run command) or `duration` s."""
        end = None if duration is None else time.monotonic() + duration
        self._proc_thread = threading.current_thread()
        next_tick = 0.0
        get = self.inbox.get
        while not self.stop_event.is_set():
            try:
                item = get(timeout=TICK_S)
            except queue.Empty:
                item = None
            if item is not None:
                self._drain(item)
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + TICK_S
            if end is not None and now >= end:
                break
        self.shutdown()

    def _drain(self, item, limit=256, merge_frames=16384):
        """Handle `item` and what else is queued (up to `limit` items). Consecutive recvmmsg
        blocks of one link are merged (up to `merge_frames` datagrams) so that when the
        processing thread is behind, each device's frames form larger groups."""
        get = self.inbox.get_nowait
        pending = item
        for _ in range(limit):
            try:
                nxt = get()
            except queue.Empty:
                nxt = None
            if nxt is not None and pending[0] == "rxb" and nxt[0] == "rxb" and \
                    nxt[1] is pending[1] and len(pending[2]) + len(nxt[2]) <= merge_frames:
                # the later receive time: a TIME_SYNC reply in `nxt` must not look older
                # than the request it answers
                pending = ("rxb", pending[1], pending[2].merge(nxt[2]), nxt[3])
                continue
            self._handle(pending)
            if nxt is None:
                return
            pending = nxt
        self._handle(pending)

    def stop(self):
        self.stop_event.set()

    def shutdown(self):
        self._proc_thread = None
        if self.http is not None:             # no request reaches a stopping coordinator
            self.http.close()
        if self.mqtt is not None:             # availability "offline", disconnect
            self.mqtt.stop()
        if self.mesh is not None:             # the mesh thread leaves; the ledger stays ours
            self.mesh.stop()
        for sup in self.supervisors:
            sup.stop()
        while True:                       # what the readers already queued
            try:
                self._handle(self.inbox.get_nowait())
            except queue.Empty:
                break
        if self.ledger is not None:
            self.ledger.flush(10)
            while True:                   # commit callbacks: ACK what is durable
                try:
                    self._handle(self.inbox.get_nowait())
                except queue.Empty:
                    break
        for link in self.links:
            link.close()
        self.sessions.save()
        self.write_status(running=False)
        if self.control is not None:
            self.control.stop()
        if self.core is not None:
            self.ledger.flush(10) if self.ledger is not None else None
            self.core.close()
        if self.ledger is not None:
            self._final_checkpoint()
            self.ledger.close()
        if self.ready_file and os.path.exists(self.ready_file):
            os.unlink(self.ready_file)

    def _final_checkpoint(self):
        """A clean stop signs the tree head of everything written since the last checkpoint,
        so `ledger verify` and an export always end on a signed size."""
        try:
            self.ledger.flush(10)
            last = self.ledger.latest_checkpoint()
            signed = int(last.split("\n")[1]) if last else 0
            if self.ledger.size > signed:
                self.ledger.checkpoint()
                self.counters["checkpoints"] += 1
        except Exception as e:          # never lose the shutdown over it; counted and shown
            self.counters["checkpoint_errors"] += 1
            self.health["checkpoint_error"] = "%s: %s" % (type(e).__name__, e)

    # ------------------------------------------------------------------ processing thread
    def _handle(self, item):
        kind = item[0]
        if kind == "rx":
            _, link, frames, t_us = item
            self._ingest_lag_us = _now_us() - t_us
            self.ingest.frames(link, frames, t_us)
        elif kind == "rxb":
            _, link, blk, t_us = item
            self._ingest_lag_us = _now_us() - t_us
            self.ingest.block(link, blk, t_us)
        elif kind == "committed":
            self._witness_committed(*item[1:])
        elif kind == "call":
            _, fn, args, fut = item
            try:
                fut.set_result(fn(*args))
            except BaseException as e:
                fut.set_exception(e)

    def call(self, fn, *args, timeout=10.0, cancel=None, loop_only=False):
        """Run fn(*args) in the processing thread and return its result (directly when called
        from it, or when the processing loop is not running - unless loop_only, which raises
        NotRunning then). cancel: a threading.Event that ends the wait early
        (concurrent.futures.CancelledError); TimeoutError after `timeout` s."""
        proc = self._proc_thread
        if proc is threading.current_thread():
            return fn(*args)
        if proc is None:
            if loop_only:
                raise NotRunning("the coordinator's processing loop is not running")
            return fn(*args)
        fut = Future()
        self.inbox.put(("call", fn, args, fut))
        if cancel is None:
            return fut.result(timeout)
        end = time.monotonic() + timeout
        while True:
            try:
                return fut.result(min(0.05, max(0.0, end - time.monotonic())))
            except TimeoutError:
                if cancel.is_set():
                    raise CancelledError() from None
                if time.monotonic() >= end:
                    raise

    def reject(self, reason, n=1):
        self.rejected[reason] += n
        self.counters["frames_rejected"] += n

    def _tick(self, now):
        self.devconfig.tick()
        for s in self.sessions.expire():
            self.counters["sessions_offline"] += 1
        if now >= self._next["sync"]:
            self._next["sync"] = now + 1.0
            for s in self.sessions.current.values():
                every = 1.0 if s.clock.count < 8 else TIME_SYNC_EVERY_S   # 8 quick samples first
                if s.online and s.hello is not None and \
                        now - s.extra.get("_last_sync", -1e9) >= every:
                    s.extra["_last_sync"] = now
                    self.time_sync(s)
        health = None
        if now >= self._next["health"]:
            self._next["health"] = now + float(self.cfg.witnessing.meta_interval)
            health = self.health = self.meta_health()
        if self.core is not None:
            core = self.core
            seen = self._tel_seen
            for s in self.sessions.current.values():
                if s._tel is not None and seen.get(s.device_id) is not s._tel:
                    core.telemetry_coherence(s.device_id, s.last_telemetry["coherence"])
                    seen[s.device_id] = s._tel
            try:
                if self.tel_history is not None:
                    self.tel_history.tick(self.sessions.current.values())
                core.tick(health=health)
            except Exception as e:            # counted; the ingest loop keeps running
                self.counters["integration_errors"] += 1
                self.health["integration_error"] = "%s: %s" % (type(e).__name__, e)
        if self.mesh is not None:
            try:
                self.mesh.tick(now)
            except Exception as e:            # counted; the ingest loop keeps running
                self.counters["mesh_errors"] += 1
                self.health["mesh_error"] = "%s: %s" % (type(e).__name__, e)
        if now >= self._next["status"]:
            self._next["status"] = now + 1.0
            self.write_status()
        if now >= self._next["save"]:
            self._next["save"] = now + 5.0
            self.sessions.save()

    # ------------------------------------------------------------------ sending
    def send(self, s, mtype, fields, boot_id=None):
        """Encode a host frame (device_id 0, the session's boot id, the host's seq for that
        session, signed when the device has a key) and send it over the session's link."""
        if s.link is None:
            return False
        t = (_now_us() - self._t0_us) & ((1 << 46) - 1)
        frame = P.encode(mtype, fields, 0, s.boot_id if boot_id is None else boot_id,
                         s.next_host_seq(), t >> 30,
                         t & (P.SEQ_LIMIT - 1), auth=self.admission.auths.get(s.device_id))
        ok = s.link.send(frame, s.addr)
        self.counters["frames_sent" if ok else "send_failures"] += 1
        return ok

    def _device_limits(self, device_id):
        """The board limits of a device's last HELLO (CONFIG checks), or None if not seen."""
        s = self.sessions.get(device_id)
        return hello_limits(s.hello) if s is not None else None

    def _send_config(self, device_id, changes, cfg_version):
        s = self.sessions.get(device_id)
        if s is None or not s.online:
            return False
        return self.send(s, P.CONFIG, {"config_version": cfg_version, "pairs": to_pairs(changes)})

    def time_sync(self, s):
        self.counters["time_sync_sent"] += 1
        return self.send(s, P.TIME_SYNC, {"mode": P.SYNC_REQUEST, "host_t1_us": _now_us(),
                                          "rx_era": 0, "rx_off": 0})

    def _on_new_session(self, s):
        if self.core is not None:
            self.core.new_stream(s.device_id)

    def _micro(self, kind, device_id=None, **data):
        if self.core is not None:
            try:
                self.core.micro(kind, device_id=device_id, **data)
            except Exception:
                self.counters["integration_errors"] += 1

    def _config_record(self, kind, data):
        self._micro("config", device_id=data.get("device"), **{k: v for k, v in data.items()
                                                                if k not in ("device", "kind")})
        return self._ledger_submit(kind, data)

    def _ledger_submit(self, kind, data, callback=None):
        self.counters["ledger_submitted"] += 1
        return self.ledger.submit(kind, data, callback=callback)

    # ------------------------------------------------------------------ events from ingest
    def master_index(self, s):
        """The session's Master stream, or -1 while its HELLO is missing: the stream needs
        the device's sampling parameters (fs, period, sum shift, phase step, lag), and
        integrating with guessed ones would be wrong for the whole boot. Such telemetry is
        counted (telemetry_before_hello) and the device is asked for its HELLO."""
        if s.mboot != s.boot_id:
            if s.hello is None:
                self.counters["telemetry_before_hello"] += 1
                self.request_hello(s)
                return -1
            self.open_master_stream(s)
        return s.midx

    def request_hello(self, s, every_s=1.0):
        """Ask a device for its HELLO (ours was lost, or this host restarted): any valid
        frame for another boot id makes the device send HELLO again (device/hostframes.py).
        At most once per `every_s` per session."""
        now = time.monotonic()
        if now - s.extra.get("_hello_req", -1e9) < every_s:
            return False
        s.extra["_hello_req"] = now
        self.counters["hello_requests"] += 1
        return self.send(s, P.TIME_SYNC, {"mode": P.SYNC_REQUEST, "host_t1_us": _now_us(),
                                          "rx_era": 0, "rx_off": 0},
                         boot_id=(s.boot_id + 1) & 0xFFFF)

    def open_master_stream(self, s):
        if self.master is None:
            return None
        h = s.hello or {}
        try:
            idx = self.master.open_stream(
                s.device_id, s.boot_id, h.get("fs_hz", 1000), h.get("period_us", 4211),
                sum_shift=h.get("sum_shift", 0), phase_step=h.get("phase_step", 0),
                lag_samples=h.get("lag_samples", 1))
        except ValueError as e:
            self.counters["master_errors"] += 1
            s.extra["master_error"] = str(e)
            idx = self.master.open_stream(s.device_id, s.boot_id, h.get("fs_hz", 1000) or 1000,
                                          max(4211, h.get("period_us", 4211)))
        s.midx, s.mboot = idx, s.boot_id
        return idx

    def on_hello(self, s):
        """First HELLO of a session: resend the device's configuration, align its PoW
        difficulty with what the host requires, start time sync."""
        dev = s.device_id
        # a CONFIG still waiting for its ACK when the device comes back from a crash or a
        # watchdog reset is what brought it down: refused, never sent again (not at this HELLO
        # either); devconfig.on_reset records it
        if s.hello.get("reset_cause") in (P.RESET_WATCHDOG, P.RESET_CRASH):
            self.devconfig.on_reset(dev, s.hello["reset_cause"])
        self.devconfig.resync(dev)
        need = self.admission.pow_bits_for(dev)
        if self.admission.pow_required and s.hello.get("pow_bits") != need and \
                self.devconfig.history(dev).state()["pow_bits"] == need and \
                dev not in self.devconfig.pending:
            self.devconfig._deliver(dev, "resync", self.devconfig.history(dev).position,
                                    {"pow_bits": need})
        s.extra["_last_sync"] = time.monotonic()
        self.time_sync(s)

    def on_beats(self, s, last_beat, n, first_beat=None):
        """Pulse summary entries: one each time a device's beat crosses a multiple of
        ledger.pulse_summary_every (1 = every beat, 0 = none)."""
        every = self.pulse_every
        if every <= 0:
            return
        nxt = s.pulse_next
        if nxt is None:           # the stream's first beats: the next multiple after them
            first = last_beat - n + 1 if first_beat is None else first_beat
            nxt = s.pulse_next = (first // every + 1) * every
        if last_beat < nxt:
            return
        rec = s.last_telemetry
        emitted = 0
        while last_beat >= nxt and emitted < max(64, n):
            data = {"device": s.device_id, "boot": s.boot_id, "beat": int(nxt), "beats": every}
            try:
                u = decode_telemetry(rec, s.hello)
                data.update(coherence=u["coherence"], threat=u["threat"],
                            decision_state=int(rec["decision_state"]), period_us=u["period_us"])
            except (KeyError, IndexError, ValueError, TypeError):
                pass
            self._ledger_submit("pulse", data)
            self.counters["pulse_entries"] += 1
            nxt += every
            emitted += 1
        s.pulse_next = (last_beat // every + 1) * every
