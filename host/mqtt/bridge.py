"""MQTT bridge with Home Assistant discovery (config `integrations.mqtt`, docs/MQTT.md).

    bridge = MqttBridge(view, cfg.integrations.mqtt, cfg.becomingone.name)
                        # view: the coordinator's CoordinatorView; ConfigError for a bad
                        # password/CA file (becomingone/cell.py builds it when enabled)
    bridge.start()      # paho network thread (loop_start) + the bridge's worker thread
    bridge.stop()       # availability "offline" (retained), clean disconnect, threads joined
    bridge.stats()      # {"connected", "published", "commands", "errors", ...} (status()["mqtt"])
    bridge.topics       # Topics: base, status, state(dev), availability(dev), clear(dev), ...

Threads. paho's network thread runs the callbacks; it never calls into the coordinator: a CLEAR
command is queued for the bridge's worker thread. The worker asks the coordinator's processing
thread for a small snapshot of every device every POLL_S seconds (CoordinatorView.device_states with
loop_only and a cancel event: a stopping bridge or coordinator never waits), publishes
discovery configs for devices it has not announced on this connection, a device's state at once when its decision
changed (seen in a snapshot, or a decision WITNESS committed: on_witness(), subscribed to the coordinator's WitnessDesk,
which catches an ALERT lasting only a few beats), every device's state every `interval`
seconds, and runs queued CLEARs through
Coordinator.clear (which sends CLEAR and writes the ledger's `action` entry). Waiting on the
processing thread is bounded and gives up when the bridge stops, so a slow or stopping
coordinator never blocks the bridge, and the broker going away never blocks the coordinator:
paho reconnects with backoff (RECONNECT_MIN_S doubling to RECONNECT_MAX_S) while the counters in
stats() say what happened.

Topics (BASE = base_topic, default becomingone/<slug of becomingone.name>):
    BASE/status                      "online" / "offline", retained; the will is "offline"
    BASE/device/<id>/state           JSON {coherence, threat, decision, quarantined, collapse,
                                     beat, online}, not retained; decision is QUARANTINE while
                                     the device is latched
    BASE/device/<id>/availability    "online" / "offline" (the device's session), retained
    BASE/device/<id>/clear           command: payload PRESS -> Coordinator.clear(<id>).
                                     A retained message here is never executed: it is counted
                                     (commands_retained_ignored), logged and deleted from the
                                     broker (a retained CLEAR would fire again on every reconnect)
    <discovery_prefix>/<component>/<node>/<object>/config   retained Home Assistant discovery
    <discovery_prefix>/status        Home Assistant's birth message "online": publish again
"""
import json
import logging
import os
import queue
import re
import stat
import threading
import time
from concurrent.futures import CancelledError
from typing import NamedTuple

from becomingone.errors import ConfigError, NotRunning
from shared import protocol as P

__all__ = ["MqttBridge", "Topics", "slug", "ENTITIES", "state_payload"]

log = logging.getLogger("becomingone.mqtt")

POLL_S = 0.25              # device snapshot period: decision changes are published this fast
RECONNECT_MIN_S = 1.0      # paho's reconnect backoff
RECONNECT_MAX_S = 30.0
CALL_TIMEOUT_S = 5.0       # longest wait on the coordinator's processing thread
PRESS = b"PRESS"           # Home Assistant's default button payload
MANUFACTURER = "BecomingONE"
DECISIONS = list(P.DECISION_NAMES)

# entity -> (component, discovery fields besides the common ones)
ENTITIES = {
    "coherence": ("sensor", {"name": "Coherence", "value_template": "{{ value_json.coherence }}",
                             "state_class": "measurement", "suggested_display_precision": 3,
                             "icon": "mdi:sine-wave"}),
    "threat": ("sensor", {"name": "Threat", "value_template": "{{ value_json.threat }}",
                          "state_class": "measurement", "suggested_display_precision": 3,
                          "icon": "mdi:shield-alert-outline"}),
    "decision": ("sensor", {"name": "Decision", "value_template": "{{ value_json.decision }}",
                            "device_class": "enum", "options": DECISIONS,
                            "icon": "mdi:state-machine"}),
    "quarantined": ("binary_sensor", {"name": "Quarantined", "device_class": "problem",
                                      "value_template": "{{ 'ON' if value_json.quarantined "
                                                        "else 'OFF' }}"}),
    "clear": ("button", {"name": "Clear", "payload_press": PRESS.decode(), "retain": False,
                         "icon": "mdi:restart-alert"}),
}


def slug(text):
    """Home Assistant node/object ids allow [a-zA-Z0-9_-] only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(text)) or "_"


class Topics:
    """The MQTT topic names of one cell (module docstring): state, availability and clear
    per device, the status topic and Home Assistant's discovery topics."""
    def __init__(self, base, discovery_prefix):
        self.base = base
        self.prefix = discovery_prefix
        self.node = slug(base.replace("/", "_"))
        self.status = base + "/status"
        self.clear_filter = base + "/device/+/clear"
        self.ha_status = discovery_prefix + "/status"
        self._clear_re = re.compile(r"^%s/device/(\d+)/clear$" % re.escape(base))

    def state(self, dev):
        return "%s/device/%d/state" % (self.base, dev)

    def availability(self, dev):
        return "%s/device/%d/availability" % (self.base, dev)

    def clear(self, dev):
        return "%s/device/%d/clear" % (self.base, dev)

    def clear_device(self, topic):
        m = self._clear_re.match(topic)
        return int(m.group(1)) if m else None

    def object_id(self, dev, entity):
        return "device%d_%s" % (dev, entity)

    def discovery(self, dev, entity):
        return "%s/%s/%s/%s/config" % (self.prefix, ENTITIES[entity][0], self.node,
                                       self.object_id(dev, entity))


def state_payload(state):
    """The state JSON of a decoded device state (becomingone.devices.state): the same
    decision, quarantine latch and values every other surface shows; `decision` is QUARANTINE
    while the device is latched (until a CLEAR)."""
    return {"coherence": round(state["coherence"], 4), "threat": round(state["threat"], 4),
            "decision": state["decision"], "quarantined": bool(state["quarantined"]),
            "collapse": bool(state["collapse"]), "beat": state["beat"],
            "online": bool(state["online"])}


def read_password(path):
    key = "config key integrations.mqtt.password_file"
    path = os.path.expanduser(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError("%s: cannot read %s: %s (allowed: a file holding the broker password)"
                          % (key, path, e.strerror or e)) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("%s: %s is accessible to group/others (mode %o): run `chmod 600 %s`"
                          % (key, path, stat.S_IMODE(st.st_mode), path))
    try:
        with open(path, encoding="utf-8") as f:
            pw = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("%s: cannot read %s: %s" % (key, path, e)) from None
    if not pw or "\n" in pw:
        raise ConfigError("%s: %s must hold the password on one non-empty line" % (key, path))
    return pw


class _Stopped(Exception):
    pass


class _Clear(NamedTuple):          # a CLEAR command from the broker, for device `device`
    device: int


class _Decision(NamedTuple):       # a decision WITNESS committed (its ledger entry data)
    device: int
    data: dict


class MqttBridge:
    """Owns the paho client and the bridge's worker thread; reaches the coordinator only
    through its view (device states, CLEAR). Raises ConfigError from the constructor for an
    unreadable or loose password file or a missing CA file; never raises into the coordinator."""

    def __init__(self, view, mcfg, cell_name):
        # paho is imported here, when a bridge is configured: most cells run without MQTT
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        self._mqtt = mqtt
        self.view = view
        self.cfg = mcfg
        self.cell = cell_name
        self.topics = Topics(mcfg.base_topic or "becomingone/" + slug(cell_name),
                             mcfg.discovery_prefix)
        self.interval = float(mcfg.interval)
        self.v5 = mcfg.protocol == "v5"
        password = read_password(mcfg.password_file) if mcfg.password_file else None
        ca = None
        if mcfg.tls and mcfg.ca_file:
            ca = os.path.expanduser(mcfg.ca_file)
            if not os.path.isfile(ca):
                raise ConfigError("config key integrations.mqtt.ca_file: %s is not a file "
                                  "(allowed: a PEM CA bundle, or null for the system's CAs)" % ca)
        self.client_id = mcfg.client_id or "becomingone-" + slug(cell_name)
        cl = self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                       protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        if mcfg.username:
            cl.username_pw_set(mcfg.username, password)
        if mcfg.tls:
            cl.tls_set(ca_certs=ca)
        cl.will_set(self.topics.status, "offline", qos=1, retain=True)
        cl.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        cl.on_connect = self._on_connect
        cl.on_connect_fail = self._on_connect_fail
        cl.on_disconnect = self._on_disconnect
        cl.on_message = self._on_message
        self._lock = threading.Lock()
        self.counters = {"connects": 0, "disconnects": 0, "connect_failures": 0, "published": 0,
                         "publish_failures": 0, "discovery_published": 0, "states_published": 0,
                         "decisions_published": 0, "commands": 0,
                         "commands_retained_ignored": 0, "commands_invalid": 0,
                         "errors": 0}
        self.connected = False
        self._failing = False
        self.last_error = None
        self._commands = queue.SimpleQueue()   # _Clear | _Decision
        self._resync = threading.Event()       # (re)connected or HA restarted: announce again
        self._stop = threading.Event()
        self._worker = None
        self._announced = {}                   # device -> (board, fw) of its discovery config
        self._last = {}                        # device -> (decision, online) last published

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        self.client.connect_async(self.cfg.host, int(self.cfg.port), int(self.cfg.keepalive))
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="mqtt bridge", daemon=True)
        self._worker.start()
        log.info("mqtt bridge: broker %s:%d, base topic %s", self.cfg.host, self.cfg.port,
                 self.topics.base)
        return self

    def stop(self, timeout=2.0):
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self.connected:
            try:
                self.client.publish(self.topics.status, "offline", qos=1,
                                    retain=True).wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:   # lost the broker meanwhile
                self._error("offline not published: %s" % e)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    def stats(self):
        with self._lock:
            d = dict(self.counters)
        d.update(connected=self.connected, broker="%s:%d" % (self.cfg.host, self.cfg.port),
                 base_topic=self.topics.base, devices=len(self._announced),
                 last_error=self.last_error)
        return d

    # ------------------------------------------------------------------ paho thread
    def _count(self, key, n=1):
        with self._lock:
            self.counters[key] += n

    def _error(self, msg):
        self.last_error = msg
        self._count("errors")
        log.warning("mqtt bridge: %s", msg)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._count("connect_failures")
            self._error("broker refused the connection: %s" % reason_code)
            return
        self.connected = True
        self._failing = False
        self._count("connects")
        client.publish(self.topics.status, "online", qos=1, retain=True)
        subs = [self.topics.clear_filter, self.topics.ha_status]
        if self.v5:
            # paho, loaded lazily with the bridge (see __init__)
            from paho.mqtt.subscribeoptions import SubscribeOptions

            # retainAsPublished: a retained command published while we are subscribed still
            # carries its retain flag, so it is recognised and never executed
            client.subscribe([(t, SubscribeOptions(qos=1, retainAsPublished=True)) for t in subs])
        else:
            client.subscribe([(t, 1) for t in subs])
        self._resync.set()
        log.info("mqtt bridge: connected to %s:%d", self.cfg.host, self.cfg.port)

    def _on_connect_fail(self, client, userdata):
        self._count("connect_failures")
        self._count("errors")
        self.last_error = "cannot connect to %s:%d" % (self.cfg.host, self.cfg.port)
        if not self._failing:          # one warning per outage, not one per retry
            self._failing = True
            log.warning("mqtt bridge: %s; retrying with backoff", self.last_error)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        was = self.connected
        self.connected = False
        if was:
            self._count("disconnects")
            if not self._stop.is_set():
                self._error("disconnected from the broker (%s); reconnecting" % reason_code)

    def _on_message(self, client, userdata, msg):
        try:
            if msg.topic == self.topics.ha_status:
                if msg.payload == b"online":
                    self._resync.set()          # Home Assistant restarted: announce again
                return
            dev = self.topics.clear_device(msg.topic)
            if dev is None:
                return
            if msg.retain:
                if msg.payload:
                    self._count("commands_retained_ignored")
                    log.warning("mqtt bridge: retained command on %s ignored and deleted "
                                "(commands must not be retained)", msg.topic)
                    client.publish(msg.topic, b"", qos=1, retain=True)   # delete it
                return
            if msg.payload != PRESS:
                self._count("commands_invalid")
                log.warning("mqtt bridge: command on %s ignored: payload %r (allowed: %r)",
                            msg.topic, msg.payload[:32], PRESS)
                return
            self._commands.put(_Clear(dev))
        except Exception as e:                  # never let a callback kill the network thread
            self._error("message on %s: %s: %s" % (msg.topic, type(e).__name__, e))

    # ------------------------------------------------------------------ processing thread
    def on_witness(self, dev, data):
        """WitnessDesk subscriber (processing thread), a WITNESS committed to the ledger: a decision
        record (the device sends one per change to a non-NOOP decision and on entering
        QUARANTINE; an ALERT may last a few beats, between two snapshots) is published at once.
        Only queues."""
        if data.get("witness") == "decision":
            self._commands.put(_Decision(dev, data))

    # ------------------------------------------------------------------ worker thread
    def _call(self, read, *args):
        """read(*args) of the coordinator's view, in its processing thread; _Stopped when it
        does not run or this bridge stops while waiting."""
        try:
            return read(*args, timeout=CALL_TIMEOUT_S, cancel=self._stop, loop_only=True)
        except (NotRunning, CancelledError):
            raise _Stopped() from None
        except TimeoutError:
            raise TimeoutError("coordinator busy for %.0f s" % CALL_TIMEOUT_S) from None

    def _work(self):
        poll = min(POLL_S, self.interval)
        now = time.monotonic()
        next_poll, next_states = now, now
        while not self._stop.is_set():
            try:
                item = self._commands.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    if type(item) is _Clear:
                        self._clear(item.device)
                    else:
                        self._publish_decision(item.device, item.data)
                    continue                        # more queued: run them first
                now = time.monotonic()
                # on a fixed grid (a late round does not push the next ones back), never
                # more than one round behind
                next_poll = max(next_poll + poll, now)
                if not self.connected:
                    continue                        # nothing to ask the coordinator for
                every = now >= next_states
                if every:
                    next_states = max(next_states + self.interval, now)
                self._publish_snapshot(self._call(self.view.device_states), every)
            except _Stopped:
                continue
            except Exception as e:                  # counted; the bridge keeps going
                self._error("%s: %s" % (type(e).__name__, e))

    def _clear(self, dev):
        try:
            res = self._call(self.view.clear, dev)
        except _Stopped:
            raise
        except Exception as e:
            self._error("CLEAR for device %d failed: %s" % (dev, e))
            return
        self._count("commands")
        log.info("mqtt bridge: CLEAR device %d (sent: %s)", dev, res.get("sent"))

    def _publish_decision(self, dev, w):
        """A decision WITNESS (ledger entry data): its decision, threat and coherence."""
        if not self.connected or dev not in self._announced:
            return                     # the next round announces the device and its state
        prev = self._last.get(dev)
        online = prev[1] if prev else True
        st = {"coherence": round(float(w.get("coherence", 0.0)), 4),
              "threat": round(float(w.get("threat", 0.0)), 4), "decision": w.get("decision"),
              "quarantined": w.get("decision") == "QUARANTINE", "collapse": None,
              "beat": w.get("beat"), "online": online}
        if self._publish(self.topics.state(dev), json.dumps(st, separators=(",", ":"))):
            self._count("states_published")
            self._count("decisions_published")
        self._last[dev] = (st["decision"], online)

    def _publish(self, topic, payload, qos=0, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            self._count("published")
            return True
        self._count("publish_failures")
        return False

    def _publish_snapshot(self, snap, every):
        if not self.connected:
            return
        if self._resync.is_set():
            self._resync.clear()
            self._announced.clear()
            self._last.clear()
            self._publish(self.topics.status, "online", qos=1, retain=True)
            every = True
        t = self.topics
        states = 0
        for x in snap:
            dev, online, board, fw = x["device_id"], x["online"], x["board"], x["firmware"]
            if self._announced.get(dev) != (board, fw):
                n = sum(self._publish(t.discovery(dev, e), json.dumps(self.discovery(dev, e, board, fw)),
                                      qos=1, retain=True) for e in ENTITIES)
                self._count("discovery_published", n)
                self._announced[dev] = (board, fw)
            prev = self._last.get(dev)
            if prev is None or prev[1] != online:
                self._publish(t.availability(dev), "online" if online else "offline",
                              qos=1, retain=True)
            if x["decision"] is None:          # no TELEMETRY yet
                self._last[dev] = (None, online)
                continue
            st = state_payload(x)
            if every or prev is None or prev[0] != st["decision"]:
                if self._publish(t.state(dev), json.dumps(st, separators=(",", ":"))):
                    states += 1
            self._last[dev] = (st["decision"], online)
        if states:
            self._count("states_published", states)

    def discovery(self, dev, entity, board=None, fw=None):
        """The retained Home Assistant discovery config of one entity of device `dev`."""
        t = self.topics
        component, fields = ENTITIES[entity]
        ident = "%s_device%d" % (t.node, dev)
        device = {"identifiers": [ident], "name": "%s device %d" % (self.cell, dev),
                  "manufacturer": MANUFACTURER, "model": board or "BecomingONE device"}
        if fw:
            device["sw_version"] = fw
        # default_entity_id (domain.object) replaced object_id in Home Assistant 2025.10
        d = {"unique_id": "%s_%s" % (ident, entity),
             "default_entity_id": "%s.%s" % (component, re.sub(r"[^a-z0-9_]", "_", "%s_%s" % (
                 t.node.lower(), t.object_id(dev, entity)))),
             "device": device, "origin": {"name": "becomingone-edge"},
             "availability": [{"topic": t.status}, {"topic": t.availability(dev)}],
             "availability_mode": "all", "qos": 1}
        d.update(fields)
        if component == "button":
            d["command_topic"] = t.clear(dev)
        else:
            d["state_topic"] = t.state(dev)
        return d
