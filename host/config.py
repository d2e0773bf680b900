"""becomingone.yaml: the host's configuration (the manifest's Appendix D plus this project's keys).

Public API
----------
    load_config(path=None, overrides=None) -> Config
        path: a YAML file (None: defaults only; no file is needed to start).
        overrides: a dict applied after the file, either nested ({"master": {"tau_max": 600}})
        or with dotted keys ({"master.tau_max": 600}); validated like the file.
        Raises host.errors.ConfigError naming the key path, what was wrong and what is allowed.
    default_config() -> Config
    Config
        nested attribute access: cfg.master.tau_max, cfg.sync.mesh.peers[0].host
        item access: cfg["master"]["tau_max"]; dotted: cfg.get("master.tau_max")
        cfg.to_dict() -> plain nested dict (lists of dicts for peers); cfg.source (file or None)
        derived helpers: cfg.window_seconds() (master.windows x kairos.tau_scale),
        cfg.data_path(*parts) (data_dir joined), cfg.memory_path(), cfg.ledger_path(),
        cfg.keystore_path(), cfg.beat_period() (T_Lambda of pulse.*, SPEC 4.1)
    SCHEMA: the key tree (each leaf: type, default, limits, help) that docs/CONFIG.md tables.

Every key either works as documented in docs/CONFIG.md or is rejected: unknown keys, wrong
types, out-of-range values and inconsistent combinations (k*P <= 1, a window longer than
master.tau_max) raise ConfigError.  Booleans are never accepted as numbers, numbers never as
booleans; an int is accepted where a float is expected.
"""
import copy
import json
import logging
import math
import os

from host.errors import ConfigError

try:  # PyYAML is a dependency; the import is deferred so `import host.config` is cheap
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


# ---------------------------------------------------------------------------------------------
# leaf specifications


class Leaf:
    """One configurable value: kind in {"bool","int","float","str","list"}."""

    def __init__(self, kind, default, help, lo=None, hi=None, lo_open=False, choices=None,
                 item=None, nullable=False, min_len=0, unique=False):
        self.kind, self.default, self.help = kind, default, help
        self.lo, self.hi, self.lo_open = lo, hi, lo_open
        self.choices, self.item, self.nullable = choices, item, nullable
        self.min_len, self.unique = min_len, unique

    def allowed(self):
        if self.choices is not None:
            return "one of: " + ", ".join(repr(c) for c in self.choices)
        if self.kind in ("int", "float"):
            lo = "-inf" if self.lo is None else repr(self.lo)
            hi = "inf" if self.hi is None else repr(self.hi)
            return "%s in %s%s, %s]" % ("an integer" if self.kind == "int" else "a number",
                                         "(" if self.lo_open else "[", lo, hi)
        if self.kind == "list":
            return "a list of " + (self.item.describe() if self.item else "values")
        return {"bool": "true or false", "str": "a string"}[self.kind] + (
            " or null" if self.nullable else "")

    def check(self, path, v):
        if v is None:
            if self.nullable:
                return None
            raise ConfigError("config key %s: null is not allowed (allowed: %s)" % (path, self.allowed()))
        k = self.kind
        if k == "bool":
            if not isinstance(v, bool):
                raise ConfigError("config key %s: expected true or false, got %r" % (path, v))
            return v
        if k in ("int", "float"):
            ok = isinstance(v, int) and not isinstance(v, bool)
            if k == "float":
                ok = ok or isinstance(v, float)
            if not ok:
                raise ConfigError("config key %s: expected %s, got %r (%s)"
                                  % (path, self.allowed(), v, type(v).__name__))
            if k == "float":
                v = float(v)
                if not math.isfinite(v):
                    raise ConfigError("config key %s: %r is not finite (allowed: %s)" % (path, v, self.allowed()))
            bad = (self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)) or \
                  (self.hi is not None and v > self.hi)
            if bad:
                raise ConfigError("config key %s: %r is out of range (allowed: %s)" % (path, v, self.allowed()))
            return v
        if k == "str":
            if not isinstance(v, str):
                raise ConfigError("config key %s: expected %s, got %r" % (path, self.allowed(), v))
            if self.choices is not None and v not in self.choices:
                raise ConfigError("config key %s: %r is not allowed (allowed: %s)" % (path, v, self.allowed()))
            return v
        if k == "list":
            if not isinstance(v, list):
                raise ConfigError("config key %s: expected %s, got %r" % (path, self.allowed(), v))
            if len(v) < self.min_len:
                raise ConfigError("config key %s: needs at least %d item(s)" % (path, self.min_len))
            out = [self.item.check("%s[%d]" % (path, i), x) for i, x in enumerate(v)]
            if self.unique:
                seen = set()
                for i, x in enumerate(out):
                    key = repr(x)
                    if key in seen:
                        raise ConfigError("config key %s[%d]: duplicate value %r" % (path, i, x))
                    seen.add(key)
            return out
        raise AssertionError(k)  # pragma: no cover


class Item:
    """Element spec of a list: a Leaf or a Section (list of mappings)."""

    def __init__(self, leaf=None, section=None):
        self.leaf, self.section = leaf, section

    def describe(self):
        if self.section is not None:
            return "mappings with keys: " + ", ".join(self.section)
        return self.leaf.allowed()

    def check(self, path, v):
        if self.section is not None:
            return _check_section(path, self.section, v)
        return self.leaf.check(path, v)


def _url(path, v):
    if not isinstance(v, str) or not v:
        raise ConfigError("config key %s: expected a link URL string, got %r" % (path, v))
    if v.startswith("udp://"):
        hostport = v[len("udp://"):]
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not (0 < int(port) < 65536):
            raise ConfigError("config key %s: %r is not udp://HOST:PORT with PORT in 1..65535" % (path, v))
        return v
    if "://" in v and not v.split("://", 1)[0] in ("socket", "loop", "rfc2217", "spy", "alt", "hwgrep"):
        raise ConfigError("config key %s: unknown link scheme in %r (allowed: udp://HOST:PORT, "
                          "a serial device path such as /dev/ttyACM0 or COM3, or a pyserial URL "
                          "socket://, loop://, rfc2217://, hwgrep://)" % (path, v))
    return v


class _UrlLeaf(Leaf):
    def __init__(self):
        Leaf.__init__(self, "str", None, "link URL")

    def allowed(self):
        return "udp://HOST:PORT, a serial device path, or a pyserial URL (socket://, loop://, ...)"

    def check(self, path, v):
        return _url(path, v)


def _check_section(path, spec, value):
    if not isinstance(value, dict):
        raise ConfigError("config key %s: expected a mapping with keys %s, got %r"
                          % (path or "(top level)", ", ".join(spec), value))
    out = {}
    for k, v in value.items():
        p = "%s.%s" % (path, k) if path else str(k)
        if k not in spec:
            raise ConfigError("config key %s is unknown (allowed keys%s: %s)"
                              % (p, " of " + path if path else "", ", ".join(spec)))
        s = spec[k]
        out[k] = _check_section(p, s, v) if isinstance(s, dict) else s.check(p, v)
    for k, s in spec.items():  # fill defaults
        if k not in out:
            p = "%s.%s" % (path, k) if path else k
            if isinstance(s, dict):
                out[k] = _check_section(p, s, {})
            elif s.default is None and not s.nullable:
                raise ConfigError("config key %s is required (allowed: %s)" % (p, s.allowed()))
            else:
                out[k] = copy.deepcopy(s.default)
    return out


# ---------------------------------------------------------------------------------------------
# the key tree (docs/CONFIG.md tables every leaf; keep the two in step)

LAYERS = ("micro", "meso", "macro", "meta")
E4 = math.exp(4.0)

SCHEMA = {
    "becomingone": {
        "name": Leaf("str", "becomingone-primary", "name of this host (cell); in ledger checkpoints and mesh"),
    },
    "data_dir": Leaf("str", "var/becomingone", "folder of the ledger, memory, keystore (~ expanded; relative to the working directory)"),
    "kairos": {
        "tau_scale": Leaf("float", 1.0, "unit of master.windows in seconds (window s = value x tau_scale)",
                          lo=0.0, lo_open=True, hi=3600.0),
        "coherence_threshold": Leaf("float", 0.95, "I_c: collapse when C >= I_c (SPEC 4.2/4.3)",
                                    lo=0.0, lo_open=True, hi=1.0),
        "omega": Leaf("float", 2.0, "omega in rad/s of the KAIROS phasor (sent to devices)", lo=0.0, hi=1.0e6),
        "tau_bar": Leaf("float", 0.01, "tau-bar lag in seconds; L = max(1, round(tau_bar*f_s)) samples",
                        lo=0.0, hi=10.0),
    },
    "master": {
        "enabled": Leaf("bool", True, "run the Master (long windows); false: no windows, no sync"),
        "tau_max": Leaf("float", 3600.0, "longest window in seconds (sizes the per-device rings)",
                        lo=1.0, hi=86400.0),
        "witness_interval": Leaf("float", 0.1, "seconds between meso records of the Master's windows",
                                 lo=0.001, hi=86400.0),
        "windows": Leaf("list", [10.0, 60.0, 600.0, 3600.0],
                        "window lengths in units of kairos.tau_scale seconds, each <= tau_max",
                        item=Item(Leaf("float", None, "", lo=0.0, lo_open=True)), min_len=1, unique=True),
        "fine_span": Leaf("float", 2.0, "seconds kept at beat resolution; longer windows start on a block "
                          "boundary (see docs/CONFIG.md)", lo=0.1, hi=600.0),
    },
    "emissary": {
        "enabled": Leaf("bool", True, "run the sync layer (Master vs Emissary); false: no sync rows, "
                        "no collapse events"),
        "tau_max": Leaf("float", 1.0, "Emissary window in seconds (the Master's short window used as "
                        "Emissary reference)", lo=0.001, hi=60.0),
        "witness_interval": Leaf("float", 0.01, "seconds between meso records of a device's Emissary state",
                                 lo=0.001, hi=86400.0),
    },
    "sync": {
        "phase_threshold": Leaf("float", 0.1, "coherent when Delta_phase < this (SPEC 4.3)", lo=0.0, lo_open=True, hi=2.0),
        "master_window": Leaf("float", 10.0, "seconds of the Master window compared with the Emissary "
                              "(<= master.tau_max)", lo=0.0, lo_open=True, hi=86400.0),
        "hysteresis": Leaf("float", 0.02, "a collapse ends when |T_sync|^2 < I_c - hysteresis", lo=0.0, hi=1.0),
        "mesh_enabled": Leaf("bool", False, "run the mesh between cells (docs/MESH.md): membership, "
                             "T_global, ledger replication with the peers below"),
        "backend": Leaf("str", "embedded", "mesh transport: embedded = TCP + mutual TLS between cells "
                        "(no server); nats = an existing NATS JetStream cluster (sync.nats.*)",
                        choices=("embedded", "nats")),
        "mesh": {
            "port": Leaf("int", 18789, "TCP port of this cell's mesh listener (mutual TLS)", lo=0, hi=65535),
            "listen": Leaf("str", "0.0.0.0", "address the mesh listener binds"),
            "advertise": Leaf("str", None, "address other cells reach this cell at (default: the local "
                              "address used to reach the first peer, else 127.0.0.1)", nullable=True),
            "cell": Leaf("str", None, "this cell's name in the mesh = its certificate's name "
                         "(default becomingone.name)", nullable=True),
            "tls_dir": Leaf("str", None, "folder of ca.pem and cells/CELL.pem|.key written by `becomingone "
                            "mesh init` (default DATA_DIR/mesh/tls)", nullable=True),
            "trust_dir": Leaf("str", None, "folder of CELL.json (ledger origin + Ed25519 key of each cell; "
                              "default DATA_DIR/mesh/trust)", nullable=True),
            "pin_peers": Leaf("bool", True, "pin a peer's ledger key in trust_dir on first contact over "
                              "mutual TLS (its certificate names the cell); false: only trust_dir files"),
            "interval": Leaf("float", 1.0, "seconds per mesh period (probe, publish T_hat, one exchange "
                             "and one pull)", lo=0.05, hi=3600.0),
            "probe_timeout": Leaf("float", 0.3, "seconds a SWIM probe waits for its ack",
                                  lo=0.01, hi=60.0),
            "replication_fanout": Leaf("int", 3, "cells that keep a full replica of each cell's ledger "
                                       "(chosen by the ring); the others keep its verified head only",
                                       lo=1, hi=100000),
            "checkpoint_interval": Leaf("float", 5.0, "seconds between the checkpoints the mesh signs "
                                        "while the ledger grows (what peers replicate up to)",
                                        lo=0.05, hi=86400.0),
            "pulse_follows_mesh": Leaf("bool", True, "the T_Lambda pulse's P = cells alive in the mesh, "
                                       "sent to devices (CONFIG pulse_p) when it changes"),
            "peers": Leaf("list", [], "seed cells to join through", item=Item(section={
                "host": Leaf("str", None, "peer host name or address"),
                "port": Leaf("int", 18789, "peer's mesh TCP port", lo=1, hi=65535),
            })),
        },
        "nats": {
            "url": Leaf("str", "nats://127.0.0.1:4222", "NATS server URL (sync.backend: nats)"),
            "replicas": Leaf("int", 1, "JetStream replicas of each ledger stream and bucket", lo=1, hi=5),
            "member_ttl": Leaf("float", 5.0, "seconds a cell stays a member without refreshing its key",
                               lo=0.5, hi=3600.0),
        },
    },
    "memory": {
        "temporal_signatures": Leaf("bool", True, "store phase snapshots (T_hat per window)"),
        "coherence_history": Leaf("bool", True, "store coherence history (C per window)"),
        "witness_logs": Leaf("bool", True, "store witness records (micro/meso/macro/meta)"),
        "snapshot_interval": Leaf("float", 1.0, "seconds between phase snapshots of a device", lo=0.01, hi=86400.0),
        "telemetry": Leaf("bool", True, "store TELEMETRY samples and HEARTBEAT lateness per device "
                          "(memory tables telemetry, heartbeats; `becomingone plot`)"),
        "telemetry_interval": Leaf("float", 0.1, "seconds between stored TELEMETRY samples of a device; "
                                   "0 = every record received (100 devices at 0.1 s = 1000 rows/s)",
                                   lo=0.0, hi=86400.0),
        "retention": Leaf("float", 7 * 86400.0, "seconds of memory kept; older rows are pruned",
                          lo=60.0, hi=3.2e9),
        "max_rows": Leaf("int", 2000000, "bound on rows per memory table; oldest pruned first",
                         lo=1000, hi=10 ** 10),
        "storage": {
            "type": Leaf("str", "sqlite", "storage engine ('temporal' = the manifest's name for it)",
                         choices=("sqlite", "temporal")),
            "path": Leaf("str", None, "memory database file (default DATA_DIR/memory.sqlite)", nullable=True),
        },
    },
    "witnessing": {
        "enabled": Leaf("bool", True, "witnessing on/off (off: no layer records anything)"),
        "layers": Leaf("list", list(LAYERS), "enabled layers", unique=True,
                       item=Item(Leaf("str", None, "", choices=LAYERS))),
        "meta_interval": Leaf("float", 1.0, "seconds between meta (host health) records", lo=0.01, hi=86400.0),
    },
    "security": {
        "intrinsic": Leaf("bool", True, "ledger-bound WITNESS records need a proof-of-work stamp "
                          "(admission.pow_bits); false: stamps not required"),
        "transport": Leaf("str", "hmac", "frame authentication: hmac = per-device truncated HMAC where a "
                          "key exists; none = tags ignored", choices=("hmac", "none")),
        "node_auth": Leaf("str", "ed25519", "mesh node authentication: signed tree heads", choices=("ed25519", "none")),
    },
    "logging": {
        "level": Leaf("str", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
        "format": Leaf("str", "structured", "structured = one JSON object a line; text = plain",
                       choices=("structured", "text")),
        "witness_logs": Leaf("bool", False, "also log every witness record at DEBUG"),
    },
    "pulse": {
        "k": Leaf("float", 4.0, "parallel flows (k*P > 1)", lo=0.0, lo_open=True, hi=1.0e6),
        "P": Leaf("float", 5.0, "nodes (k*P > 1)", lo=0.0, lo_open=True, hi=1.0e6),
        "T1": Leaf("float", 0.001, "T1 in seconds", lo=0.0, lo_open=True, hi=60.0),
        "U": Leaf("float", E4, "U (> 1; default e^4)", lo=1.0, lo_open=True, hi=1.0e300),
    },
    "links": Leaf("list", ["udp://127.0.0.1:18790"], "links the host listens on", item=Item(_UrlLeaf()),
                  unique=True),
    "ledger": {
        "path": Leaf("str", None, "ledger database (default DATA_DIR/ledger.sqlite)", nullable=True),
        "pulse_summary_every": Leaf("int", 1000, "a pulse-summary entry every N beats of a device "
                                    "(1 = every beat, 0 = none)", lo=0, hi=10 ** 9),
        "checkpoint_every": Leaf("int", 10000, "a signed checkpoint every N entries (0 = only on demand)",
                                 lo=0, hi=10 ** 12),
        "group_commit_ms": Leaf("float", 5.0, "longest wait to group entries into one commit", lo=0.0, hi=10000.0),
        "synchronous": Leaf("str", "FULL", "SQLite synchronous in WAL mode: FULL = a committed (ACKed) entry "
                            "survives power loss; NORMAL = it survives a crash or kill of the process, "
                            "not a power loss or OS crash (faster)", choices=("FULL", "NORMAL")),
    },
    "admission": {
        "unknown_devices": Leaf("str", "accept", "devices with no key in the keystore: reject = drop their "
                                "frames; observe = integrate (Master, memory) but never reach the ledger; "
                                "accept = unauthenticated but admitted", choices=("reject", "observe", "accept")),
        "keystore": Leaf("str", None, "keystore file (default DATA_DIR/keys.json)", nullable=True),
        "pow_bits": Leaf("int", 16, "proof-of-work difficulty (leading zero bits) required on WITNESS",
                         lo=0, hi=32),
        "rate": {
            "capacity": Leaf("float", 2000.0, "token bucket size, cost units (cost = complexity^1.5)",
                             lo=0.0, lo_open=True, hi=1.0e12),
            "refill": Leaf("float", 1000.0, "cost units refilled per second", lo=0.0, lo_open=True, hi=1.0e12),
        },
    },
    "devices": {
        "telemetry_every": Leaf("int", 1, "a device sends TELEMETRY every N beats", lo=1, hi=65535),
        "heartbeat_s": Leaf("float", 1.0, "seconds between HEARTBEATs when idle", lo=0.01, hi=3600.0),
        "session_timeout_s": Leaf("float", 10.0, "a device silent this long is marked offline",
                                  lo=0.1, hi=86400.0),
    },
    "integrations": {
        "mqtt": {     # host/integrations/mqtt.py, docs/MQTT.md
            "enabled": Leaf("bool", False, "bridge device state to an MQTT broker with Home Assistant "
                            "discovery (needs host)"),
            "host": Leaf("str", None, "broker host name or address", nullable=True),
            "port": Leaf("int", 1883, "broker port (8883 is the usual TLS port)", lo=1, hi=65535),
            "protocol": Leaf("str", "v5", "MQTT version: v5 (retained commands always recognised) or "
                             "v311 (MQTT 3.1.1)", choices=("v5", "v311")),
            "username": Leaf("str", None, "user name, or null for anonymous", nullable=True),
            "password_file": Leaf("str", None, "file holding the password (mode 0600, one line; "
                                  "needs username); the password never goes in the config",
                                  nullable=True),
            "client_id": Leaf("str", None, "MQTT client id (default becomingone-NAME, NAME = becomingone.name)",
                              nullable=True),
            "base_topic": Leaf("str", None, "topic prefix of states, availability and commands "
                               "(default becomingone/NAME, NAME = becomingone.name)", nullable=True),
            "discovery_prefix": Leaf("str", "homeassistant", "Home Assistant discovery prefix"),
            "interval": Leaf("float", 10.0, "seconds between state publishes (a decision change is "
                             "published at once)", lo=0.05, hi=86400.0),
            "keepalive": Leaf("int", 60, "MQTT keepalive in seconds", lo=5, hi=65535),
            "tls": Leaf("bool", False, "connect with TLS (server certificate verified)"),
            "ca_file": Leaf("str", None, "CA bundle for tls (null: the system's CAs)", nullable=True),
        },
    },
    "http": {     # host/http/, docs/HTTP.md
        "enabled": Leaf("bool", True, "serve the HTTP API, the live dashboard and /metrics "
                        "(`--no-http` or BECOMINGONE_HTTP=off switch it off)"),
        "host": Leaf("str", "127.0.0.1", "address the HTTP server binds; any address other than "
                     "loopback needs a token"),
        "port": Leaf("int", 8000, "HTTP port (0 = a free port, printed at start)", lo=0, hi=65535),
        "token": Leaf("str", None, "bearer token the API and dashboard require (at least 16 "
                      "characters; BECOMINGONE_HTTP_TOKEN overrides)", nullable=True),
        "token_file": Leaf("str", None, "file holding the token (mode 0600, one line); instead of "
                           "http.token", nullable=True),
        "sse_interval": Leaf("float", 0.5, "seconds between dashboard snapshots (one snapshot "
                             "shared by every live client)", lo=0.05, hi=60.0),
    },
}


# ---------------------------------------------------------------------------------------------
# the Config object


class Config:
    """Validated configuration; nested attribute or item access (read-only by convention)."""

    def __init__(self, data, source=None, _path=""):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_path", _path)
        object.__setattr__(self, "source", source)

    def _wrap(self, key, v):
        p = "%s.%s" % (self._path, key) if self._path else key
        if isinstance(v, dict):
            return Config(v, self.source, p)
        if isinstance(v, list) and v and isinstance(v[0], dict):
            return [Config(x, self.source, "%s[%d]" % (p, i)) for i, x in enumerate(v)]
        return v

    def __getattr__(self, key):
        try:
            v = self._data[key]
        except KeyError:
            raise AttributeError("config has no key %s (allowed: %s)"
                                 % (("%s.%s" % (self._path, key)) if self._path else key,
                                    ", ".join(self._data))) from None
        return self._wrap(key, v)

    def __setattr__(self, key, value):
        raise AttributeError("Config is read-only; use load_config(overrides=...)")

    def __getitem__(self, key):
        return self._wrap(key, self._data[key])

    def __contains__(self, key):
        return key in self._data

    def __iter__(self):
        return iter(self._data)

    def __eq__(self, other):
        return isinstance(other, Config) and self._data == other._data

    def __repr__(self):
        return "Config(%r)" % (self._data,)

    def get(self, dotted, default=None):
        node = self._data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return self._wrap(dotted.rsplit(".", 1)[-1], node)

    def to_dict(self):
        return copy.deepcopy(self._data)

    # ---- derived values (root only)
    def window_seconds(self):
        """master.windows in seconds (x kairos.tau_scale), sorted."""
        s = self._data["kairos"]["tau_scale"]
        return sorted(w * s for w in self._data["master"]["windows"])

    def data_path(self, *parts):
        return os.path.join(os.path.expanduser(self._data["data_dir"]), *parts)

    def memory_path(self):
        p = self._data["memory"]["storage"]["path"]
        return os.path.expanduser(p) if p else self.data_path("memory.sqlite")

    def ledger_path(self):
        p = self._data["ledger"]["path"]
        return os.path.expanduser(p) if p else self.data_path("ledger.sqlite")

    def keystore_path(self):
        p = self._data["admission"]["keystore"]
        return os.path.expanduser(p) if p else self.data_path("keys.json")

    def lag_samples(self, fs_hz):
        """kairos.tau_bar as the device's lag in samples at fs_hz: max(1, round(tau_bar * f_s))."""
        return max(1, int(round(self._data["kairos"]["tau_bar"] * float(fs_hz))))

    def heartbeat_beats(self, period_s=None):
        """devices.heartbeat_s in beats of period_s (default: the pulse's beat), at least 1."""
        p = self.beat_period() if period_s is None else float(period_s)
        return max(1, int(round(self._data["devices"]["heartbeat_s"] / p)))

    def beat_period(self):
        """T_Lambda = T1 ln(U) / (1 - 1/(kP)), never below 1e-6 s (SPEC 4.1)."""
        p = self._data["pulse"]
        return max(1e-6, p["T1"] * math.log(p["U"]) / (1.0 - 1.0 / (p["k"] * p["P"])))


def _cross_checks(d):
    p = d["pulse"]
    if p["k"] * p["P"] <= 1.0:
        raise ConfigError("config keys pulse.k and pulse.P: k*P = %r must be > 1 (T_Lambda is undefined "
                          "otherwise)" % (p["k"] * p["P"]))
    tau_max = d["master"]["tau_max"]
    scale = d["kairos"]["tau_scale"]
    for i, w in enumerate(d["master"]["windows"]):
        if w * scale > tau_max + 1e-9:
            raise ConfigError("config key master.windows[%d]: %r x kairos.tau_scale %r = %r s is longer than "
                              "master.tau_max = %r s (allowed: windows <= tau_max)"
                              % (i, w, scale, w * scale, tau_max))
    if d["emissary"]["tau_max"] > tau_max:
        raise ConfigError("config key emissary.tau_max: %r s is longer than master.tau_max %r s"
                          % (d["emissary"]["tau_max"], tau_max))
    if d["sync"]["master_window"] > tau_max + 1e-9:
        raise ConfigError("config key sync.master_window: %r s is longer than master.tau_max %r s"
                          % (d["sync"]["master_window"], tau_max))
    if d["sync"]["hysteresis"] >= d["kairos"]["coherence_threshold"]:
        raise ConfigError("config key sync.hysteresis: %r must be below kairos.coherence_threshold %r"
                          % (d["sync"]["hysteresis"], d["kairos"]["coherence_threshold"]))
    _mqtt_checks(d["integrations"]["mqtt"])
    h = d["http"]
    if h["token"] is not None and h["token_file"] is not None:
        raise ConfigError("config keys http.token and http.token_file: set one of them, not both")
    if h["token"] is not None and len(h["token"].strip()) < 16:
        raise ConfigError("config key http.token: a token needs at least 16 characters (got %d)"
                          % len(h["token"].strip()))


_TOPIC_BAD = ("+", "#", "\x00")


def _mqtt_checks(m):
    """integrations.mqtt: keys that only make sense together (file existence is checked when the
    bridge starts: host/integrations/mqtt.py)."""
    k = "config key integrations.mqtt."
    for key in ("base_topic", "discovery_prefix", "client_id"):
        v = m[key]
        if v is None:
            continue
        if key != "client_id" and (not v or v.startswith("/") or v.endswith("/") or "//" in v):
            raise ConfigError(k + "%s: %r is not a topic prefix (allowed: non-empty levels separated "
                              "by '/', no leading or trailing '/')" % (key, v))
        if any(c in v for c in _TOPIC_BAD) or not v:
            raise ConfigError(k + "%s: %r may not be empty or contain the wildcards + and # "
                              "(allowed: plain topic text)" % (key, v))
    if not m["enabled"]:
        return
    if not m["host"]:
        raise ConfigError(k + "host is required when integrations.mqtt.enabled is true "
                          "(allowed: the broker's host name or address)")
    if m["password_file"] and not m["username"]:
        raise ConfigError(k + "password_file needs integrations.mqtt.username (MQTT sends a "
                          "password only with a user name)")
    if m["ca_file"] and not m["tls"]:
        raise ConfigError(k + "ca_file is set but integrations.mqtt.tls is false (allowed: set tls: "
                          "true, or ca_file: null)")


def _merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _expand_dotted(overrides):
    out = {}
    for k, v in overrides.items():
        if not isinstance(k, str):
            raise ConfigError("config override key %r must be a string" % (k,))
        parts = k.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError("config override %s conflicts with another override" % k)
            node = nxt
        if isinstance(v, dict) and isinstance(node.get(parts[-1]), dict):
            _merge(node[parts[-1]], _expand_dotted(v))
        else:
            node[parts[-1]] = _expand_dotted(v) if isinstance(v, dict) else v
    return out


def read_yaml(path):
    if yaml is None:  # pragma: no cover
        raise ConfigError("PyYAML is not installed (pip install PyYAML)")
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("cannot read config file %s: %s" % (path, e.strerror or e)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("config file %s is not valid YAML: %s" % (path, e)) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("config file %s: the top level must be a mapping of keys (allowed keys: %s)"
                          % (path, ", ".join(SCHEMA)))
    return raw


def load_config(path=None, overrides=None):
    """Defaults, then the YAML file at `path` (if any), then `overrides`; validated."""
    raw = read_yaml(path) if path is not None else {}
    if overrides:
        if not isinstance(overrides, dict):
            raise ConfigError("config overrides must be a mapping, got %r" % (overrides,))
        raw = _merge(raw, _expand_dotted(overrides))
    data = _check_section("", SCHEMA, raw)
    _cross_checks(data)
    return Config(data, source=path)


def default_config():
    return load_config()


class _JsonFormatter(logging.Formatter):
    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record):
        out = {"t": round(record.created, 6), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in self._SKIP:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure_logging(cfg, stream=None):
    """Set up the "becomingone" logger from logging.level / logging.format (idempotent)."""
    log = logging.getLogger("becomingone")
    log.setLevel(cfg.logging.level)
    for h in list(log.handlers):
        if getattr(h, "_becomingone", False):
            log.removeHandler(h)
    h = logging.StreamHandler(stream)
    h._becomingone = True
    if cfg.logging.format == "structured":
        h.setFormatter(_JsonFormatter())
    else:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(h)
    log.propagate = False
    return log


def iter_leaves(spec=None, prefix=""):
    """(dotted path, Leaf) for every key of SCHEMA (used by docs and tests)."""
    spec = SCHEMA if spec is None else spec
    for k, s in spec.items():
        p = prefix + k
        if isinstance(s, dict):
            yield from iter_leaves(s, p + ".")
        else:
            yield p, s
