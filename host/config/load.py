"""becomingone.yaml: the host's configuration (the manifest's Appendix D plus this project's keys).

Public API
----------
    load_config(path=None, overrides=None) -> Config
        path: a YAML file (None: defaults only; no file is needed to start).
        overrides: a dict applied after the file, either nested ({"master": {"tau_max": 600}})
        or with dotted keys ({"master.tau_max": 600}); validated like the file.
        Raises becomingone.errors.ConfigError naming the key path, what was wrong and what is allowed.
    default_config() -> Config
    Config
        nested attribute access: cfg.master.tau_max, cfg.sync.mesh.peers[0].host
        item access: cfg["master"]["tau_max"]; dotted: cfg.get("master.tau_max")
        cfg.to_dict() -> plain nested dict (lists of dicts for peers); cfg.source (file or None)
        derived helpers: cfg.window_seconds() (master.windows x kairos.tau_scale),
        cfg.data_path(*parts) (data_dir joined), cfg.memory_path(), cfg.ledger_path(),
        cfg.keystore_path(), cfg.beat_period() (T_Lambda of pulse.*, SPEC 4.1)
        cfg.warnings: tuple of texts: a configuration that loads but cannot do what it is for
        (a KAIROS window that can never collapse at kairos.omega, below); `run` and `emulate`
        print them (commands/common.py print_warnings)
    unreachable_windows(omega, I_c, windows) -> [(name, seconds, bound, omega_max)]
    DEVICE_WINDOW_S = 1.0: the device's own Emissary window (firmware, not configurable here)
    SCHEMA: the key tree (each leaf: type, default, limits, help) that docs/CONFIG.md tables
        (defined in host/config/schema.py).

KAIROS windows that cannot collapse (issue 11): with the phasor e^{i omega t}, a window of W
seconds has C <= sinc^2(omega W / 2) for a steady machine (the phasor turns by omega W over the
window while the machine's lagged product does not), so at omega = 2 rad/s no window longer than
0.39 s reaches I_c = 0.95. Each window the configuration uses (the device's 1 s Emissary window,
emissary.tau_max, sync.master_window, every master.windows entry) for which that bound is below
kairos.coherence_threshold is named in a warning with the largest omega that would let it
collapse. A warning, not a refusal: a signal whose correlation itself turns with the phasor (a
knock once per 2 pi / omega seconds) can still collapse there (tests/test_master_wire.py).

Every key either works as documented in docs/CONFIG.md or is rejected: unknown keys, wrong
types, out-of-range values and inconsistent combinations (k*P <= 1, a window longer than
master.tau_max) raise ConfigError; so do a key given twice in one mapping and a file that is
not UTF-8 text.  Booleans are never accepted as numbers, numbers never as
booleans; an int is accepted where a float is expected.
"""
import copy
import json
import logging
import math
import os

from becomingone.config.schema import SCHEMA, _check_section
from becomingone.errors import ConfigError

try:  # PyYAML is a dependency; the import is deferred so `import becomingone.config` is cheap
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


# ---------------------------------------------------------------------------------------------
# the Config object


class Config:
    """Validated configuration; nested attribute or item access (read-only by convention)."""

    def __init__(self, data, source=None, _path="", warnings=()):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_path", _path)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "warnings", tuple(warnings))

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

    def lag_samples(self, rate_hz=250.0):
        """kairos.tau_bar as a device's KAIROS lag at rate_hz (its KAIROS rate, f_s / M; 250 Hz
        nominal): 0 (learn it) when tau_bar is 0, else max(1, round(tau_bar * rate_hz))."""
        tb = self._data["kairos"]["tau_bar"]
        return 0 if tb == 0 else max(1, int(round(tb * float(rate_hz))))

    def heartbeat_beats(self, period_s=None):
        """devices.heartbeat_s in beats of period_s (default: the pulse's beat), at least 1."""
        p = self.beat_period() if period_s is None else float(period_s)
        return max(1, int(round(self._data["devices"]["heartbeat_s"] / p)))

    def beat_period(self):
        """T_Lambda = T1 ln(U) / (1 - 1/(kP)), never below 1e-6 s (SPEC 4.1)."""
        p = self._data["pulse"]
        return max(1e-6, p["T1"] * math.log(p["U"]) / (1.0 - 1.0 / (p["k"] * p["P"])))


DEVICE_WINDOW_S = 1.0        # the device's Emissary window (device/beat_maths.py WINDOW_S)


def _sinc2(x):
    return 1.0 if x == 0 else (math.sin(x) / x) ** 2


def _omega_max(W, I_c):
    """The largest omega (rad/s) with sinc^2(omega W / 2) >= I_c (bisection on the main lobe)."""
    lo, hi = 0.0, math.pi
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sinc2(mid) >= I_c:
            lo = mid
        else:
            hi = mid
    return 2.0 * lo / W


def unreachable_windows(omega, I_c, windows):
    """The windows (name, seconds) that a steady machine can never collapse in at omega:
    [(name, seconds, sinc^2 bound, the largest omega that would allow it)]."""
    out = []
    for name, W in windows:
        b = _sinc2(omega * W / 2.0)
        if b < I_c:
            out.append((name, W, b, _omega_max(W, I_c)))
    return out


def _kairos_warnings(d):
    omega = d["kairos"]["omega"]
    if omega == 0:
        return []
    I_c = d["kairos"]["coherence_threshold"]
    scale = d["kairos"]["tau_scale"]
    ws = [("the device's Emissary window", DEVICE_WINDOW_S),
          ("emissary.tau_max", d["emissary"]["tau_max"]),
          ("sync.master_window", d["sync"]["master_window"])]
    ws += [("master.windows[%d]" % i, w * scale) for i, w in enumerate(d["master"]["windows"])]
    return ["config key kairos.omega: %g rad/s means %s (%g s) can never collapse on a steady "
            "machine: its C <= sinc^2(omega W/2) = %.3g < kairos.coherence_threshold %g "
            "(allowed for this window: omega <= %.3g rad/s, or 0, the default)"
            % (omega, name, W, b, I_c, om) for name, W, b, om in unreachable_windows(omega, I_c, ws)]


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
    sec = d["security"]
    if sec["transport"] == "tls" and d["sync"]["mesh_enabled"] and d["sync"]["backend"] == "nats" \
            and not d["sync"]["nats"]["url"].startswith("tls://"):
        raise ConfigError("config key security.transport: tls needs every link authenticated, but "
                          "sync.nats.url %r is not tls:// (allowed: a tls:// NATS URL, the embedded "
                          "backend, or security.transport: hmac)" % d["sync"]["nats"]["url"])
    h = d["http"]
    if h["token"] is not None and h["token_file"] is not None:
        raise ConfigError("config keys http.token and http.token_file: set one of them, not both")
    if h["token"] is not None and len(h["token"].strip()) < 16:
        raise ConfigError("config key http.token: a token needs at least 16 characters (got %d)"
                          % len(h["token"].strip()))


_TOPIC_BAD = ("+", "#", "\x00")


def _mqtt_checks(m):
    """integrations.mqtt: keys that only make sense together (file existence is checked when the
    bridge starts: host/mqtt/bridge.py)."""
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


def _strict_loader():
    """yaml.SafeLoader that refuses a key given twice in one mapping (YAML 1.2 requires unique
    keys; PyYAML would silently keep the last one)."""
    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _v in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        "key %r appears twice (first at line %d): each key may be given once"
                        % (key, seen[key] + 1), key_node.start_mark)
                seen[key] = key_node.start_mark.line
            except TypeError:          # an unhashable key: the constructor reports it
                pass
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def read_yaml(path):
    if yaml is None:  # pragma: no cover
        raise ConfigError("PyYAML is not installed (pip install PyYAML)")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError("cannot read config file %s: %s" % (path, e.strerror or e)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError("config file %s is not UTF-8 text: byte 0x%02x at line %d (offset %d); "
                          "save it as UTF-8" % (path, data[e.start], line, e.start)) from None
    try:
        raw = yaml.load(text, Loader=_strict_loader())
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
    return Config(data, source=path, warnings=_kairos_warnings(data))


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
