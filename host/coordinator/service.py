"""The coordinator: the device side of a cell, links -> ingest -> devices -> core -> ledger and
memory, run by one processing thread (docs/HOST.md).

    c = Coordinator(cfg, links=["udp://127.0.0.1:0"])   # cfg: becomingone.config.Config
    c.start()                # open_stores() (ledger, integration core) + listen() (links,
                             # readers under supervisors, control socket)
    c.run(duration=None)     # processing loop in this thread until stop() or the duration;
                             # shuts down at the end (attached parts first)
    c.stop()                 # ask the loop to end: drain, flush the ledger, ACK what committed
    c.status() -> dict       # what `becomingone status` and the emulation summary show
    c.call(fn, *args)        # run fn in the processing thread (thread-safe), returns its result

Threads: one reader per link (supervised, becomingone/util/supervisor.py) posting Received
messages to the inbox; the processing loop (the caller of run()) owns sessions, the Master and
device state; the ledger's writer thread posts Committed messages (a WITNESS is ACKed only after
its entry is committed); the control socket, HTTP and MQTT post Call messages
(becomingone/coordinator/inbox.py). The user surfaces (HTTP, MQTT, mesh) are wired to it by the
composition root, becomingone/cell.py, through attach() and its CoordinatorView.
"""
import collections
import itertools
import logging
import os
import queue
import threading
import time
from concurrent.futures import CancelledError, Future

from becomingone.coordinator.control import SOCKET_NAME, ControlServer
from becomingone.coordinator.frames import DeviceFrames
from becomingone.coordinator.inbox import Call, Committed, Received
from becomingone.coordinator.operator import Operator
from becomingone.coordinator.view import CoordinatorView
from becomingone.core.feed import TelemetryFeed
from becomingone.core.integration import Integration
from becomingone.core.master import Master
from becomingone.core.pulses import PulseSummaries
from becomingone.core.sync import window_states
from becomingone.devices.config import DeviceConfigs, device_defaults, hello_limits
from becomingone.devices.handshake import Handshakes
from becomingone.devices.sender import FrameSender
from becomingone.devices.sessions import Sessions
from becomingone.devices.timesync import TIME_SYNC_EVERY_S, TIME_SYNC_QUICK
from becomingone.devices.witness import WitnessDesk
from becomingone.errors import LinkError, NotRunning, UserError
from becomingone.ingest.admission import Admission
from becomingone.ingest.keystore import Keystore
from becomingone.ingest.pipeline import Ingest
from becomingone.ledger import Ledger
from becomingone.links import make_link
from becomingone.memory.telemetry import TelemetryHistory
from becomingone.model.features import FIELDS, SEED, load_model_file
from becomingone.util.atomic import write_json
from becomingone.util.supervisor import Supervisor
from becomingone.util.tally import Tally
from becomingone.util.times import monotonic_us
from becomingone.wire.receive import Receiver
from becomingone.wire.screen import screen_batch

__all__ = ["Coordinator", "NotRunning"]

log = logging.getLogger(__name__)

TICK_S = 0.05
TIME_SYNC_PER_TICK = 64  # TIME_SYNC requests a tick sends at most (~60 us each: 1,280/s)
MAX_INBOX = 2048          # queued receive batches; beyond this a link drops (counted "overload")
SHED_INBOX = 256          # beyond this a link first sheds the frames of over-budget senders
# A reader sheds what it reads (counted "overload") while the frames queued for the
# processing thread (all links) are more than MAX_QUEUE_S of its measured throughput (frames
# taken per second in the last RATE_WINDOW_S window; at least MIN_QUEUED_FRAMES, at most
# MAX_QUEUED_FRAMES, a memory bound); beyond half of it, it first sheds the frames of
# over-budget senders. Under overload the throughput is the thread's capacity, so a frame
# queued waits at most ~MAX_QUEUE_S: the ingest lag stays short and the thread keeps its pace
# (it never works through seconds of stale frames while the kernel drops fresh ones
# uncounted); below capacity, a slow integration cycle or a scheduling hiccup shorter than
# MAX_QUEUE_S sheds nothing.
MAX_QUEUE_S = 0.35
MIN_QUEUED_FRAMES = 32768
MAX_QUEUED_FRAMES = 131072
RATE_WINDOW_S = 1.0
MERGE_FRAMES = 16384      # consecutive batches of one link merged up to this many frames
# Under traffic a link's reader reads at most every READ_GAP_S: once it takes PACE_FPS frames/s
# (measured over PACE_WINDOW_S), a read that drained fewer than PACE_FULL datagrams is followed
# by a pause until READ_GAP_S after its start, so each read gathers ~READ_GAP_S of traffic. A
# read, its screening and its inbox message cost tens of us whatever their size; left to
# itself the reader polls the socket as fast as it can and at 200k frames/s it took reads of
# ~7 datagrams (median) and a tenth of the cell's CPU more than paced. Only where the link's
# OS buffer holds PACE_MARGIN x READ_GAP_S of traffic (PACE_SKB bytes a small datagram);
# quiet links are never paused, so a lone frame's receive time (a TIME_SYNC's t4) is exact.
READ_GAP_S = 0.001
PACE_FPS = 20000
PACE_WINDOW_S = 0.1
PACE_FULL = 1024
PACE_MARGIN = 8
PACE_SKB = 1024
# Receive batches of at least COALESCE_MIN frames (traffic, not a lone HELLO or WITNESS) are
# gathered up to COALESCE_FRAMES frames, or until the oldest is COALESCE_US old, before they
# are processed: the per-device work of a batch (rate bucket, sequence run, session, Master
# stream) is paid once per device per batch, so a batch holding several beats of each device
# costs a fraction per frame of one holding a single beat of each (600 devices: ~12 us per frame
# in 512-frame batches, ~4 us in 4096-frame ones). The wait scales with how busy the thread is
# (its CPU for ingest and integration per second, `ingest_util`): COALESCE_US at COALESCE_UTIL or
# busier, proportionally less below (a lightly loaded cell waits next to nothing), so it adds
# at most COALESCE_US to the ingest lag and only when the gathering pays.
# The integration cycle (Master -> sync layer -> witnessing -> memory, and the telemetry
# samples) runs at most every TICK_S, and then no sooner than its cost allows it to take at most
# CORE_SHARE of the processing thread: with many devices a cycle costs tens of ms, and run back
# to back with ingest it would take half the thread. Its intervals (master/emissary
# witness_interval, memory.snapshot_interval, telemetry_interval) are minimum spacings, so under
# load records are spaced further apart; nothing else changes. status.json likewise: every
# second, or at most STATUS_SHARE of the thread's CPU (thread time: a write pre-empted by other
# processes took wall time, not the thread's, and once pushed the next write 10+ s out), and at
# least every STATUS_MAX_S.
CORE_SHARE = 0.15
STATUS_SHARE = 0.03
STATUS_MAX_S = 5.0
COALESCE_MIN = 128
COALESCE_FRAMES = 16384
COALESCE_US = 40000
COALESCE_UTIL = 0.5
# status() sections of the parts the composition root may attach, when they are not there
DETACHED_STATUS = {"http": None, "mqtt": None, "mesh": {"enabled": False}, "witnesses": None}


class ReadPacer:
    """A link reader's pace (READ_GAP_S above): pause(n, t_read) after a read of n datagrams
    that started at t_read (time.monotonic()) -> seconds to wait before the next read."""

    def __init__(self, link):
        self.link = link
        self.t0 = time.monotonic()    # the rate window's start
        self.n = 0                    # datagrams read in it
        self.gap = 0.0                # READ_GAP_S while the link is under traffic, else 0

    def pause(self, n, t_read):
        self.n += n
        el = t_read - self.t0
        if el >= PACE_WINDOW_S:
            fps = self.n / el
            buf = self.link.rcvbuf_bytes
            self.gap = READ_GAP_S if fps >= PACE_FPS and (
                buf is None or buf >= PACE_MARGIN * PACE_SKB * fps * READ_GAP_S) else 0.0
            self.t0, self.n = t_read, 0
        if not self.gap or n >= PACE_FULL:
            return 0.0
        return t_read + self.gap - time.monotonic()


class Coordinator:
    """The device side of a cell. Owns its links, sessions, admission (keys, policy, rate,
    proof of work), device configurations, WITNESS desk, Master, integration core (sync layer,
    witnessing, memory) and ledger, and the processing thread that alone touches them.
    Raises from start(): LinkError (a UDP port cannot be bound), LedgerError, UserError (a
    damaged state file, a control socket a live coordinator owns); from call(): NotRunning
    (loop_only while the loop does not run), TimeoutError, CancelledError."""

    def __init__(self, cfg, links=None, ready_file=None, control=True, master=True):
        self.cfg = cfg
        self.data_dir = os.path.abspath(cfg.data_path())
        os.makedirs(self.data_dir, exist_ok=True)
        self.ready_file = ready_file
        self.link_urls = list(links if links else cfg.links)
        self.links = [make_link(u) for u in self.link_urls]
        self.tally = Tally()
        self.counters = self.tally.counts
        self.inbox = queue.SimpleQueue()
        self.stop_event = threading.Event()
        self.started = None
        self.health = {}
        self.ingest_lag_us = 0
        self._proc_thread = None  # the thread running run(), while it runs
        self._posted = {}         # id(link) -> frames its reader queued (each reader its own)
        self._taken = 0           # frames the processing thread took from the inbox
        # the throughput window: start, frames taken, seconds busy (ingest and integration)
        self._rate = [time.monotonic(), 0, 0.0]
        self.ingest_fps = 0.0     # frames the processing thread took per second (last window)
        self.ingest_util = 0.0    # the thread's CPU (ingest, integration) per second, last window
        self._next = collections.defaultdict(float)
        self._want_control = control
        self._attached = []       # (name, stop, tick, status) of parts the composition root wired
        self.view = CoordinatorView(self)
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
                                 on_new_session=self._new_session,
                                 takeover_s=cfg.devices.takeover_s,
                                 max_unkeyed=a.max_unkeyed_devices,
                                 unkeyed_idle_s=cfg.devices.unkeyed_idle_s,
                                 hello_first=a.unknown_devices != "accept")
        self.sender = FrameSender(self.admission.has_key, self.counters)
        self.handshakes = Handshakes(self.admission, self.sessions, self.sender, self.counters,
                                     reject=self.tally.reject)
        self.devconfig = DeviceConfigs(device_defaults(cfg),
                                       os.path.join(self.data_dir, "devconfig.json"),
                                       send=self._send_config, ledger_append=self._config_record,
                                       limits=self._device_limits)
        self.witness = WitnessDesk(self.admission, self.sender, self.sessions, self.tally,
                                   self.submit,
                                   lambda key, e, err: self.inbox.put(Committed(key, e, err)),
                                   self.micro)
        self.master = Master.from_config(cfg) if master and cfg.master.enabled else None
        self.pulses = PulseSummaries(cfg.ledger.pulse_summary_every, self.submit, self.counters)
        self.feed = TelemetryFeed(self.master, self.pulses, self.counters, self.sender.request_hello)
        self.frames = DeviceFrames(self.sessions, self.devconfig, self.admission, self.witness,
                                   self.feed, self.sender, self.tally, self.model_at_hello)
        self.ingest = Ingest(self.receiver, self.admission, self.sessions, self.tally, self.frames,
                             self.handshakes)
        self.ledger = None
        self.core = None          # core/integration.py: sync layer, witnessing, memory
        self.tel_history = None   # memory/telemetry.py: telemetry/heartbeat rows in memory
        self.operator = None      # coordinator/operator.py, once the stores are open
        self.supervisors = []
        self.control = None

    @property
    def rejected(self):
        """Every frame refused so far, by reason (a snapshot): the processing thread's, the link
        readers' (junk screened out, frames shed, overload) and the links' framing drops."""
        return collections.Counter(self.tally.all_rejected(self.links))

    # ------------------------------------------------------------------ wiring
    def attach(self, name, stop, tick=None, status=None):
        """A part wired by the composition root (becomingone/cell.py): tick(now) runs in the
        processing loop (an exception is counted as <name>_errors and shown in health),
        status() is status()[name], stop() runs first at shutdown (last attached, first)."""
        self._attached.append((name, stop, tick, status))

    # ------------------------------------------------------------------ lifecycle
    def start(self, integration=True):
        self.open_stores(integration)
        self.listen()
        return self

    def open_stores(self, integration=True):
        """Open the ledger (recalling committed WITNESS keys) and the integration core."""
        cfg = self.cfg
        self.ledger = Ledger(cfg.ledger_path(), checkpoint_every=cfg.ledger.checkpoint_every or None,
                             group_commit_ms=cfg.ledger.group_commit_ms, synchronous=cfg.ledger.synchronous,
                             key_dir=cfg.ledger.key_dir)
        self.witness.recall(self.ledger)
        if integration:
            self.core = Integration(cfg, self.master, ledger_submit=self.submit, writer_thread=True)
            self.tel_history = TelemetryHistory.from_config(cfg, self.core.memory)
            self.feed.integration, self.feed.history = self.core, self.tel_history
        self.operator = Operator(self.sessions, self.sender, self.devconfig, self.admission,
                                 self.keystore, self.receiver, self.ledger, self.submit, self.micro,
                                 self.master, self.core, self.status, self.stop,
                                 keys_changed=lambda ids: [self.handshakes.forget(d) for d in ids])
        return self

    def model_at_hello(self, s):
        """devices.model: the seed's or the host-trained entropy model, sent to a device at its
        first HELLO (shipped: the firmware keeps its own device/model_default.py; nothing sent)."""
        kind = self.cfg.devices.model
        if kind == "shipped" or self.operator is None:
            return
        if kind == "seed":
            fields = dict(zip(FIELDS, SEED))
        else:
            try:
                fields = dict(zip(FIELDS, load_model_file(
                    os.path.join(self.data_dir, "entropy_model.json")).weights()))
            except UserError as e:
                self.counters["model_errors"] += 1
                s.extra["model_error"] = str(e)
                return
        self.operator.push_model(s.device_id, fields)

    def close_stores(self):
        """Undo open_stores() (a later start step failed)."""
        if self.core is not None:
            self.core.close()
        if self.ledger is not None:
            self.ledger.close()

    def listen(self):
        """Open the links (a UDP port that cannot be bound: LinkError, everything closed; a
        serial port not there yet is waited for), start their readers and the control socket."""
        for link in self.links:
            try:
                link.open()
            except LinkError:
                if link.datagram:
                    for other in self.links:
                        other.close()
                    self.close_stores()
                    raise
                # a serial board not plugged in yet: open() left it wanted, readers retry
        for link in self.links:
            sup = Supervisor("link " + link.local_url, self._reader(link), base_delay=0.05,
                             max_delay=5.0, on_error=self._worker_error)
            self.supervisors.append(sup.start())
        if self._want_control:
            self.control = ControlServer(os.path.join(self.data_dir, SOCKET_NAME),
                                         self.view.command).start()
        self.started = time.time()
        return self

    def announce(self, info):
        """Write the ready file (--ready-file), removed again at shutdown."""
        if self.ready_file:
            write_json(self.ready_file, info, mode=0o600, default=str, sort_keys=True)

    def ready_info(self):
        return {"pid": os.getpid(), "data_dir": self.data_dir,
                "links": [link.local_url for link in self.links],
                "control": os.path.join(self.data_dir, SOCKET_NAME) if self.control else None,
                "ledger": self.ledger.path if self.ledger else None}

    def _worker_error(self, name, err):
        self.counters["worker_crashes"] += 1

    def _reader(self, link):
        """A link's reader: what arrives is screened here (host/wire/screen.py: junk is counted
        by reason and dropped before it costs the processing thread anything); when the
        processing thread is behind (more than half of queue_limit() queued), the frames of
        senders over their rate budget are shed first; beyond queue_limit() (or MAX_INBOX
        batches) whole reads are dropped before screening (counted "overload")."""
        inbox = self.inbox
        junk = self.tally.screen_counter(link)   # written by this thread only
        rate = self.admission.rate
        posted = self._posted
        me = id(link)
        posted[me] = 0                           # frames this reader queued (written by it only)

        pacer = ReadPacer(link)

        def take(batch):
            t = monotonic_us()
            depth = inbox.qsize()
            queued = self.queued_frames()
            limit = self.queue_limit()
            if depth > MAX_INBOX or queued > limit:
                # processing is behind: shed load here, before anything else is spent on
                # it (the cheapest drop), counted, so that what is queued stays fresh and
                # the processing thread keeps its pace
                self.tally.overload += len(batch)   # only the readers write it
                return
            batch, rej = screen_batch(batch)
            if rej:
                junk.update(rej)
            if batch is None:
                return
            if (depth > SHED_INBOX or queued > limit // 2) and rate.over:
                batch, shed = batch.without_devices(rate.over)
                if shed:
                    junk["shed"] += shed
                if batch is None:
                    return
            posted[me] += len(batch)
            inbox.put(Received(link, batch, t))

        def work(stop):
            while not stop.is_set():
                t_read = time.monotonic()
                batch = link.recv_batch(0.1)
                if batch is None:
                    continue
                take(batch)
                rest = pacer.pause(len(batch), t_read)
                if rest > 0:
                    stop.wait(rest)
        return work

    def queue_limit(self):
        """Frames the readers may queue: MAX_QUEUE_S of the processing thread's throughput,
        within MIN_QUEUED_FRAMES..MAX_QUEUED_FRAMES (2 x MIN_QUEUED_FRAMES while there is no
        traffic to measure it on)."""
        fps = self.ingest_fps
        if not fps:
            return 2 * MIN_QUEUED_FRAMES
        return int(min(MAX_QUEUED_FRAMES, max(MIN_QUEUED_FRAMES, fps * MAX_QUEUE_S)))

    def queued_frames(self):
        """Frames the link readers queued that the processing thread has not taken yet."""
        return sum(list(self._posted.values())) - self._taken

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

    def _drain(self, item, limit=256):
        """Handle `item` and what else is queued (up to `limit` items). Consecutive batches of
        one link are merged when their shape allows (recvmmsg blocks, up to MERGE_FRAMES) so
        that each device's frames form larger groups: when the processing thread is behind, and
        under traffic (COALESCE_*) by waiting up to COALESCE_US for the next batches."""
        get_nowait, get = self.inbox.get_nowait, self.inbox.get
        pending = item
        parts = ptimes = None     # batches of `pending` to merge (one concatenation), and
        #                           when each was received (a frame keeps its own read's time)
        nparts = len(item.batch) if type(item) is Received else 0
        first_us = item.received_us if type(item) is Received else None
        for _ in range(limit):
            try:
                nxt = get_nowait()
            except queue.Empty:
                nxt = None
                if COALESCE_MIN <= nparts < COALESCE_FRAMES:
                    window = COALESCE_US * min(1.0, self.ingest_util / COALESCE_UTIL)
                    wait = first_us + window - monotonic_us()
                    if wait > 0:
                        try:
                            nxt = get(timeout=wait / 1e6)
                        except queue.Empty:
                            nxt = None
            if type(nxt) is Received and type(pending) is Received and nxt.link is pending.link \
                    and nparts + len(nxt.batch) <= MERGE_FRAMES and pending.batch.mergeable(nxt.batch):
                if parts is None:
                    parts, ptimes = [pending.batch], [pending.received_us]
                parts.append(nxt.batch)
                ptimes.append(nxt.received_us)
                nparts += len(nxt.batch)
                # the merge's time is the latest (the lag is taken from the first: first_us);
                # each frame keeps its own read's receive time (ptimes: a TIME_SYNC reply's t4)
                pending = Received(pending.link, pending.batch, nxt.received_us)
                continue
            self._handle_merged(pending, parts, first_us, ptimes)
            if nxt is None:
                return
            pending, parts, ptimes = nxt, None, None
            nparts = len(nxt.batch) if type(nxt) is Received else 0
            first_us = nxt.received_us if type(nxt) is Received else None
        self._handle_merged(pending, parts, first_us, ptimes)

    def _handle_merged(self, msg, parts, first_us, times=None):
        if parts is not None:
            msg = Received(msg.link, type(parts[0]).concat(parts), msg.received_us)
            times = (list(itertools.accumulate(len(b) for b in parts)), times)
        self.handle(msg, first_us, times)

    def stop(self):
        self.stop_event.set()

    def shutdown(self):
        self._proc_thread = None
        for name, stop, _tick, _status in reversed(self._attached):
            stop()                            # no request or mesh period reaches a stopping host
        for sup in self.supervisors:
            sup.stop()
        self._handle_queued()                 # what the readers already queued
        if self.ledger is not None:
            self.ledger.flush(10)
            self._handle_queued()             # commit callbacks: ACK what is durable
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

    def _handle_queued(self):
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.handle(msg)

    def _final_checkpoint(self):
        """A clean stop signs the tree head of everything written since the last checkpoint,
        so `ledger verify` and an export always end on a signed size."""
        try:
            self.ledger.flush(10)
            if self.ledger.size > self.ledger.signed_size():
                self.ledger.checkpoint()
                self.counters["checkpoints"] += 1
        except Exception as e:          # never lose the shutdown over it; counted and shown
            self.counters["checkpoint_errors"] += 1
            self.health["checkpoint_error"] = "%s: %s" % (type(e).__name__, e)

    # ------------------------------------------------------------------ processing thread
    def handle(self, msg, first_us=None, parts=None):
        """One inbox message (becomingone/coordinator/inbox.py); first_us: the receipt of the
        oldest batch merged into a Received (its lag is the ingest lag); parts: where each
        merged read ends and when it was received (Ingest.receive)."""
        t = type(msg)
        if t is Received:
            n = len(msg.batch)
            self._taken += n
            w = self._rate
            w[1] += n
            c0 = time.thread_time()                 # CPU, not wall: a starved thread is not busy
            el = time.monotonic() - w[0]
            if el >= RATE_WINDOW_S or (w[1] >= 2 * MIN_QUEUED_FRAMES and el >= 0.2 * RATE_WINDOW_S):
                # fewer than MIN_QUEUED_FRAMES in a window and nothing queued: no traffic to take
                # a rate from (handshakes, a quiet cell), the bound is 2 x MIN_QUEUED_FRAMES until
                # there is; a slow window with a backlog is a stall, its rate is the bound's. A
                # window closes after RATE_WINDOW_S, or sooner once it took 2 x MIN_QUEUED_FRAMES
                # (at the start of traffic the rate is known within a fraction of a second)
                if w[1] >= MIN_QUEUED_FRAMES or (self.ingest_fps and self.queued_frames() > n):
                    self.ingest_fps = w[1] / el
                else:
                    self.ingest_fps = 0.0
                self.ingest_util = w[2] / el
                w[0], w[1], w[2] = w[0] + el, 0, 0.0
            self.ingest_lag_us = monotonic_us() - (first_us or msg.received_us)
            try:
                self.ingest.receive(msg.link, msg.batch, msg.received_us, parts)
            except Exception as e:            # a bug, never bad input: counted, loop goes on
                self.counters["ingest_errors"] += 1
                self.tally.reject("internal", n)
                self.health["ingest_error"] = "%s: %s" % (type(e).__name__, e)
                log.exception("ingest error (a %d-frame batch dropped)", n)
            w[2] += time.thread_time() - c0
        elif t is Committed:
            try:
                self.witness.committed(msg.key, msg.entry, msg.error)
            except Exception as e:
                self.counters["ingest_errors"] += 1
                self.health["ingest_error"] = "%s: %s" % (type(e).__name__, e)
                log.exception("error after a ledger commit")
        elif t is Call:
            try:
                msg.future.set_result(msg.fn(*msg.args))
            except BaseException as e:
                msg.future.set_exception(e)

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
        self.inbox.put(Call(fn, args, fut))
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

    def _tick(self, now):
        self.admission.rate.roll_over()
        self.handshakes.expire(now)
        self.devconfig.tick()
        for s in self.sessions.expire():
            self.counters["sessions_offline"] += 1
        if now >= self._next["time_sync"]:
            # the devices due, at most TIME_SYNC_PER_TICK a tick (the rest stay due: the next
            # tick takes them), so that a thousand devices' requests are not one stall
            self._next["time_sync"] = now + 1.0
            sent = 0
            for s in self.sessions.current.values():
                every = 1.0 if s.clock.count < TIME_SYNC_QUICK else TIME_SYNC_EVERY_S
                if s.online and s.hello is not None and (
                        s.last_time_sync is None or now - s.last_time_sync >= every):
                    if sent >= TIME_SYNC_PER_TICK:
                        self._next["time_sync"] = now
                        break
                    s.last_time_sync = now
                    self.sender.time_sync(s)
                    sent += 1
        health = None
        if now >= self._next["health"]:
            self._next["health"] = now + float(self.cfg.witnessing.meta_interval)
            health = self.health = self.meta_health()
        if self.core is not None and (now >= self._next["core"] or health is not None):
            t0 = time.perf_counter()
            c0 = time.thread_time()
            try:
                if self.tel_history is not None:
                    self.tel_history.tick(self.sessions.current.values())
                self.core.tick(health=health)
            except Exception as e:            # counted; the ingest loop keeps running
                self.counters["integration_errors"] += 1
                self.health["integration_error"] = "%s: %s" % (type(e).__name__, e)
            # the integration cycle's budget: at most CORE_SHARE of the processing thread (with
            # many devices a cycle costs tens of ms; run back to back they would halve ingest)
            t1 = time.perf_counter()
            self._next["core"] = now + (t1 - t0) + (t1 - t0) * (1.0 - CORE_SHARE) / CORE_SHARE
            self._rate[2] += time.thread_time() - c0
        for name, _stop, tick, _status in self._attached:
            if tick is None:
                continue
            try:
                tick(now)
            except Exception as e:            # counted; the ingest loop keeps running
                self.counters[name + "_errors"] += 1
                self.health[name + "_error"] = "%s: %s" % (type(e).__name__, e)
        if now >= self._next["status"]:
            c0 = time.thread_time()
            self.write_status()
            # every second, or less often when it costs more than STATUS_SHARE of the thread
            cost = time.thread_time() - c0
            self._next["status"] = now + min(STATUS_MAX_S, max(1.0, cost / STATUS_SHARE))
        if now >= self._next["save"]:
            self._next["save"] = now + 5.0
            self.sessions.save()

    # ------------------------------------------------------------------ ports of the parts
    def submit(self, kind, data, callback=None):
        """A ledger entry (group commit; callback(entry, error) from the writer thread)."""
        self.counters["ledger_submitted"] += 1
        return self.ledger.submit(kind, data, callback=callback)

    def micro(self, kind, device_id=None, **data):
        """A micro witnessing record (an operation: config, clear, model, device WITNESS)."""
        if self.core is not None:
            try:
                self.core.micro(kind, device_id=device_id, **data)
            except Exception:
                self.counters["integration_errors"] += 1

    def _device_limits(self, device_id):
        """The board limits of a device's last HELLO (CONFIG checks), or None if not seen."""
        s = self.sessions.get(device_id)
        return hello_limits(s.hello) if s is not None else None

    def _send_config(self, device_id, changes, cfg_version):
        s = self.sessions.get(device_id)
        if s is None or not s.online:
            return False
        return self.sender.config(s, changes, cfg_version)

    def _config_record(self, kind, data):
        self.micro("config", device_id=data.get("device"), **{k: v for k, v in data.items()
                                                              if k not in ("device", "kind")})
        return self.submit(kind, data)

    def _new_session(self, session):
        self.feed.new_boot(session.device_id)

    # ------------------------------------------------------------------ status
    def meta_health(self):
        sessions = self.sessions.current.values()
        lost = sum(s.lost for s in sessions)
        got = sum(s.frames for s in sessions)
        return {"ingest_lag_ms": round(self.ingest_lag_us / 1000.0, 3),
                "inbox_depth": self.inbox.qsize(),
                "inbox_frames": self.queued_frames(), "inbox_frames_limit": self.queue_limit(),
                "ingest_fps": round(self.ingest_fps), "ingest_util": round(self.ingest_util, 3),
                "ledger_queue": self.ledger.queued() if self.ledger is not None else 0,
                "loss": round(lost / (lost + got), 6) if lost + got else 0.0,
                "witness_pending": len(self.witness.pending),
                "config_pending": len(self.devconfig.pending)}

    def status(self):
        """The status object (docs/HOST.md). Thread-safe: from another thread it is built in
        the processing thread."""
        try:
            return self.call(self.status_now, timeout=10.0)
        except TimeoutError:
            return self.status_now()

    def status_now(self):
        """The status object, built in the calling thread (the processing thread's job)."""
        c = self.counters
        led = self.ledger
        overload = self.tally.overload
        st = {
            "running": not self.stop_event.is_set(), "pid": os.getpid(),
            "started": self.started, "uptime_s": time.time() - self.started if self.started else 0,
            "data_dir": self.data_dir,
            "links": [link.stats() for link in self.links],
            "workers": [s.metrics() for s in self.supervisors],
            "devices_seen": len(self.sessions.current),
            "devices_online": sum(1 for s in self.sessions.current.values() if s.online),
            "frames_received": c["frames_received"], "frames_accepted": c["frames_accepted"],
            "frames_rejected": self.tally.all_rejected(self.links),
            "frames_awaiting_handshake": c["frames_awaiting_handshake"],
            "frames_sent": c["frames_sent"],
            "beats": c["beats"],
            "witness": {"received": c["witness_received"], "committed": c["witness_committed"],
                        "acked": c["witness_acked"], "duplicate": c["witness_duplicate"],
                        "reacked": c["witness_reacked"], "rejected_pow": c["witness_rejected_pow"],
                        "observed": c["witness_observed"], "pending": len(self.witness.pending)},
            "ledger": {"path": led.path if led else None, "size": led.size if led else None},
            "counters": dict(c), "health": self.meta_health(),
            "admission": self.admission.summary(), "devconfig": dict(self.devconfig.counters),
            "handshakes": self.handshakes.summary(),
            "session_limits": {k: v for k, v in self.sessions.summary().items()
                               if k in ("unkeyed_devices", "max_unkeyed")},
            "sessions": self.sessions.summary()["sessions"],
            "integration": self._core_status(),
        }
        # each device's windows (C once a window exists, its fill) and sync state
        st["sync"], st["windows"] = window_states(
            self.master, None if self.core is None else self.core.sync, list(self.sessions.current))
        st.update(DETACHED_STATUS)
        for name, _stop, _tick, status in self._attached:
            if status is not None:
                st[name] = status()
        return st

    def _core_status(self):
        if self.core is None:
            return None
        st = dict(self.core.status())
        st.pop("last_cycle", None)        # per-device arrays: see `memory` / the Master instead
        return st

    def write_status(self, running=True):
        try:
            st = self.status()
            st["running"] = running
            write_json(os.path.join(self.data_dir, "status.json"), st, mode=0o600, default=str,
                       sort_keys=True)
        except OSError:
            self.counters["status_write_errors"] += 1
