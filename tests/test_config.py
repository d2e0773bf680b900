"""Config: defaults without a file, the example file, overrides, and every kind of rejection
(unknown keys, wrong types, out-of-range values, inconsistent combinations)."""
import os

import pytest

from becomingone.config import SCHEMA, iter_leaves, load_config
from becomingone.errors import ConfigError, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "docs", "becomingone.example.yaml")
CONFIG_MD = os.path.join(ROOT, "docs", "CONFIG.md")


def test_defaults_need_no_file():
    c = load_config()
    assert c.becomingone.name == "becomingone-primary"
    assert c.kairos.coherence_threshold == 0.95 and c.kairos.omega == 0.0 and c.kairos.tau_bar == 0.0
    assert c.master.tau_max == 3600.0 and c.window_seconds() == [10.0, 60.0, 600.0, 3600.0]
    assert c.emissary.tau_max == 1.0 and c.sync.phase_threshold == 0.1
    assert c.witnessing.layers == ["micro", "meso", "macro", "meta"]
    assert c.beat_period() == pytest.approx(0.004211, abs=5e-7)     # SPEC 4.5 validation number
    assert c["master"]["windows"] == c.get("master.windows")
    assert c.get("no.such.key", "x") == "x"
    assert c.memory_path().endswith("memory.sqlite") and c.ledger_path().endswith("ledger.sqlite")
    assert isinstance(c.to_dict(), dict) and c.source is None
    with pytest.raises(AttributeError):
        c.master.nope
    with pytest.raises(AttributeError):
        c.master = 1


def test_example_file_loads_and_equals_defaults_where_documented(tmp_path):
    c = load_config(EXAMPLE)
    assert c.source == EXAMPLE
    assert c.sync.mesh.peers[0].port == 18789
    assert c.admission.unknown_devices in ("reject", "observe", "accept")


def test_every_key_is_in_docs_and_example():
    text = open(CONFIG_MD, encoding="utf-8").read()
    example = open(EXAMPLE, encoding="utf-8").read()
    for path, _leaf in iter_leaves():
        assert "`%s`" % path in text, path
        assert path.rsplit(".", 1)[-1] + ":" in example, path


def test_yaml_file_and_overrides(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("master:\n  tau_max: 600\n  windows: [5, 60, 600]\nkairos:\n  tau_scale: 1\n"
                 "links: ['udp://0.0.0.0:9000', '/dev/ttyACM0', 'socket://localhost:7000']\n"
                 "sync:\n  mesh:\n    peers:\n      - host: a\n      - {host: b, port: 1}\n")
    c = load_config(str(p), overrides={"kairos.omega": 3, "master": {"witness_interval": 0.5}})
    assert c.master.tau_max == 600.0 and c.window_seconds() == [5.0, 60.0, 600.0]
    assert c.kairos.omega == 3.0 and isinstance(c.kairos.omega, float)
    assert c.master.witness_interval == 0.5
    assert [(x.host, x.port) for x in c.sync.mesh.peers] == [("a", 18789), ("b", 1)]
    assert load_config(overrides={"kairos.tau_scale": 2.0, "master.windows": [5]}).window_seconds() == [10.0]
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    assert load_config(str(empty)) == load_config()


@pytest.mark.parametrize("over, words", [
    ({"master.tau_maxx": 1}, ["master.tau_maxx", "unknown", "tau_max"]),
    ({"kairoz": {}}, ["kairoz", "unknown", "kairos"]),
    ({"sync.mesh.peers": [{"host": "a", "prt": 1}]}, ["sync.mesh.peers[0].prt", "unknown", "port"]),
    ({"master.tau_max": "3600"}, ["master.tau_max", "expected a number"]),
    ({"master.enabled": 1}, ["master.enabled", "true or false"]),
    ({"admission.pow_bits": 12.5}, ["admission.pow_bits", "integer"]),
    ({"admission.pow_bits": True}, ["admission.pow_bits", "integer"]),
    ({"master.windows": "10"}, ["master.windows", "list"]),
    ({"master.windows": []}, ["master.windows", "at least 1"]),
    ({"master.windows": [10, 10]}, ["master.windows[1]", "duplicate"]),
    ({"kairos": 3}, ["kairos", "mapping"]),
    ({"kairos.coherence_threshold": 1.5}, ["kairos.coherence_threshold", "out of range", "1.0"]),
    ({"kairos.coherence_threshold": 0}, ["kairos.coherence_threshold", "out of range"]),
    ({"kairos.omega": float("nan")}, ["kairos.omega", "not finite"]),
    ({"admission.pow_bits": 33}, ["admission.pow_bits", "out of range", "32"]),
    ({"sync.mesh.peers": [{"host": "a", "port": 70000}]}, ["sync.mesh.peers[0].port", "65535"]),
    ({"sync.mesh.peers": [{"port": 1}]}, ["sync.mesh.peers[0].host", "required"]),
    ({"admission.unknown_devices": "maybe"}, ["admission.unknown_devices", "reject", "observe", "accept"]),
    ({"security.transport": "ssl"}, ["security.transport", "hmac", "tls", "none"]),
    ({"security.node_auth": "ed25519"}, ["security.node_auth", "mutual_tls"]),
    ({"witnessing.layers": ["micro", "nano"]}, ["witnessing.layers[1]", "nano", "meso"]),
    ({"logging.level": "info"}, ["logging.level", "INFO"]),
    ({"links": ["udp://host"]}, ["links[0]", "udp://HOST:PORT"]),
    ({"links": ["tcp://h:1"]}, ["links[0]", "scheme"]),
    ({"pulse.k": 0.2}, ["pulse.k", "k*P", "> 1"]),
    ({"master.windows": [10, 7200]}, ["master.windows[1]", "tau_max"]),
    ({"emissary.tau_max": 10, "master.tau_max": 5, "master.windows": [5]}, ["emissary.tau_max"]),
    ({"sync.hysteresis": 0.96}, ["sync.hysteresis", "coherence_threshold"]),
])
def test_rejections_name_key_and_allowed(over, words):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=over)
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert isinstance(e.value, UserError)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
    p = tmp_path / "bad.yaml"
    p.write_text("master: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(p))
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(p))


def test_schema_defaults_are_valid():
    for path, leaf in iter_leaves():
        if leaf.default is not None:
            leaf.check(path, leaf.default)
    assert set(SCHEMA) >= {"becomingone", "kairos", "master", "emissary", "sync", "memory",
                           "witnessing", "security", "logging", "pulse", "links", "ledger",
                           "admission", "devices", "data_dir"}


def test_derived_helpers_and_logging():
    import io
    import json as _json
    from becomingone.config import configure_logging
    c = load_config(overrides={"kairos.tau_bar": 0.0123, "devices.heartbeat_s": 1.0})
    assert c.lag_samples(1000) == 12 and c.lag_samples(10) == 1
    assert c.heartbeat_beats() == round(1.0 / c.beat_period()) and c.heartbeat_beats(0.5) == 2
    buf = io.StringIO()
    log = configure_logging(load_config(overrides={"logging.level": "WARNING"}), stream=buf)
    log.info("hidden")
    log.getChild("master").warning("lag %d ms", 7, extra={"device_id": 3})
    rec = _json.loads(buf.getvalue().strip())
    assert rec["level"] == "WARNING" and rec["msg"] == "lag 7 ms" and rec["device_id"] == 3
    assert rec["logger"] == "becomingone.master"
    buf2 = io.StringIO()
    log = configure_logging(load_config(overrides={"logging.format": "text"}), stream=buf2)
    log.info("plain")
    assert "INFO becomingone: plain" in buf2.getvalue() and buf.getvalue().count("\n") == 1


def test_omega_that_caps_every_window_is_warned_about_naming_the_window():
    """C <= sinc^2(omega W/2) on a steady machine: at the spec's 2 rad/s every window the host
    and the device use is named; at the default omega = 0 there is nothing to say."""
    from becomingone.config.load import unreachable_windows
    assert load_config().warnings == ()
    w = load_config(overrides={"kairos.omega": 2.0}).warnings
    names = ["the device's Emissary window", "emissary.tau_max", "sync.master_window",
             "master.windows[0]", "master.windows[1]", "master.windows[2]", "master.windows[3]"]
    assert len(w) == len(names)
    for text, name in zip(w, names):
        assert name in text and "kairos.coherence_threshold 0.95" in text and "allowed" in text
    assert "= 0.708 <" in w[0] and "omega <= 0.783 rad/s" in w[0]     # sinc^2(1) = 0.708
    # 0.05 rad/s: the 1 s and 10 s windows can collapse (sinc^2(0.25) = 0.98), 60 s cannot
    w = load_config(overrides={"kairos.omega": 0.05}).warnings
    assert [t.split(" means ")[1].split(" (")[0] for t in w] == [
        "master.windows[1]", "master.windows[2]", "master.windows[3]"]
    # the bound is tight: the largest omega it names is where sinc^2 meets I_c
    (_, _, b, om), = unreachable_windows(1.0, 0.9, [("w", 10.0)])
    assert unreachable_windows(om * 0.999, 0.9, [("w", 10.0)]) == []
    assert unreachable_windows(om * 1.001, 0.9, [("w", 10.0)]) != []


def test_the_sinc_bound_holds_for_a_steady_machine():
    """The bound the warning states, checked on the SPEC's float64 reference: a steady tone
    with the lag at one period reaches C ~ 1 at omega = 0, and stays under sinc^2(omega W/2)
    (to the tone's own share of the window) at omega = 2 rad/s."""
    import numpy as np
    from tests.reference.kairos_ref import kairos
    fk, f0 = 250.0, 5.0
    n = np.arange(int(12 * fk))
    x = 1000 * np.sin(2 * np.pi * f0 * n / fk + 0.3)
    lag = int(fk / f0)
    for W in (1.0, 10.0):
        a = len(n) - int(W * fk)
        c0 = kairos(x, fk, lag=lag, omega=0.0, start=a)["C"]
        c2 = kairos(x, fk, lag=lag, omega=2.0, start=a)["C"]
        bound = (np.sin(W) / W) ** 2
        assert c0 > 0.99 and c2 <= bound + 0.01, (W, c0, c2, bound)
