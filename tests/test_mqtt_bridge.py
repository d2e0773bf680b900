"""MQTT bridge (host/mqtt/bridge.py) against a real Mosquitto broker, with an in-process
coordinator fed by fake devices over loopback UDP."""
import json
import os
import time

import pytest

from becomingone.config import load_config
from becomingone.cell import Cell
from becomingone.errors import ConfigError
from becomingone.mqtt.bridge import ENTITIES, Topics
from shared import protocol as P
from tests.mqtt_broker import Broker, Recorder, have_mosquitto
from tests.test_coordinator import HELLO, FakeDevice, make_coord, stop, tel, wait

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed "
                                "(Debian package mosquitto; .ci/run installs it)")

BASE = "becomingone/cell-a"
TOPICS = Topics(BASE, "homeassistant")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def mqtt_over(port, **kw):
    o = {"becomingone.name": "cell-a", "integrations.mqtt.enabled": True,
         "integrations.mqtt.host": "127.0.0.1", "integrations.mqtt.port": port,
         "integrations.mqtt.interval": 0.2}
    o.update({"integrations.mqtt." + k: v for k, v in kw.items()})
    return o


def hello_and_beats(dev, first=1, n=5, decision=0):
    dev.send(P.HELLO, HELLO)
    for b in range(first, first + n):
        t = tel(b)
        t["decision_state"] = decision
        dev.send(P.TELEMETRY, t)


def states(rec, dev):
    return [json.loads(p) for t, p, _ in list(rec.msgs) if t == TOPICS.state(dev)]


def discovery_topics(dev):
    return {TOPICS.discovery(dev, e) for e in ENTITIES}


def test_discovery_states_availability_and_clean_offline(tmp_path, broker, capsys):
    rec = Recorder(broker.port, ["homeassistant/#", BASE + "/#"])
    c, th, addr = make_coord(tmp_path, **mqtt_over(broker.port))
    try:
        devs = [FakeDevice(addr, device_id=d, boot_id=0x100 + d) for d in (17, 18)]
        for d in devs:
            hello_and_beats(d)
        want = discovery_topics(17) | discovery_topics(18)
        assert wait(lambda: want <= {t for t, _, _ in rec.msgs}), [m[0] for m in rec.msgs]
        assert wait(lambda: len(states(rec, 17)) >= 2 and states(rec, 18))
        st = states(rec, 17)[-1]
        assert st["coherence"] == pytest.approx(60000 / 65535, abs=1e-4)
        assert st["threat"] == pytest.approx(100 / 65535, abs=1e-4)
        assert st["decision"] == "NOOP" and st["quarantined"] is False and st["online"] is True
        assert (TOPICS.status, b"online", False) in rec.msgs or \
            any(t == TOPICS.status and p == b"online" for t, p, _ in rec.msgs)
        assert any(t == TOPICS.availability(17) and p == b"online" for t, p, _ in rec.msgs)
        cfgs = {t: json.loads(p) for t, p, _ in rec.msgs if t.endswith("/config")}
        coh = cfgs[TOPICS.discovery(17, "coherence")]
        assert coh["state_topic"] == TOPICS.state(17) and coh["state_class"] == "measurement"
        assert coh["device"]["identifiers"] == ["becomingone_cell-a_device17"]
        assert coh["unique_id"] == "becomingone_cell-a_device17_coherence"
        assert coh["default_entity_id"] == "sensor.becomingone_cell_a_device17_coherence"
        assert coh["device"]["manufacturer"] == "BecomingONE" and coh["device"]["model"] == "emu"
        assert coh["device"]["sw_version"] == "0.1.0"
        assert [a["topic"] for a in coh["availability"]] == [TOPICS.status, TOPICS.availability(17)]
        dec = cfgs[TOPICS.discovery(17, "decision")]
        assert dec["device_class"] == "enum" and "QUARANTINE" in dec["options"]
        btn = cfgs[TOPICS.discovery(18, "clear")]
        assert btn["command_topic"] == TOPICS.clear(18) and btn["payload_press"] == "PRESS"
        assert "state_topic" not in btn and btn["retain"] is False
        assert len({c["unique_id"] for c in cfgs.values()}) == len(cfgs) == 2 * len(ENTITIES)
        # a device appearing later is announced when first seen
        late = FakeDevice(addr, device_id=40, boot_id=0x140)
        hello_and_beats(late)
        assert wait(lambda: discovery_topics(40) <= {t for t, _, _ in rec.msgs})
        # a late subscriber still gets the (retained) discovery configs
        rec2 = Recorder(broker.port, ["homeassistant/#"])
        try:
            assert wait(lambda: discovery_topics(17) <= {t for t, _, r in rec2.msgs if r})
        finally:
            rec2.close()
        assert wait(lambda: c.status()["mqtt"]["discovery_published"] == 3 * len(ENTITIES))
        m = c.status()["mqtt"]
        assert m["connected"] and m["published"] > 0 and m["errors"] == 0
        assert m["discovery_published"] == 3 * len(ENTITIES) and m["devices"] == 3
        from types import SimpleNamespace
        from becomingone.commands import status as status_cmd
        status_cmd.run(SimpleNamespace(data=c.data_dir, config=None, json=False, verify=False))
        line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("mqtt")]
        assert line and "connected to 127.0.0.1:%d" % broker.port in line[0], line
    finally:
        stop(c, th)
    rec.wait(lambda m: m[0] == TOPICS.status and m[1] == b"offline", what="offline")
    assert c.status()["mqtt"]["connected"] is False
    rec.close()


def test_decision_change_is_published_at_once_and_clear_command(tmp_path, broker):
    rec = Recorder(broker.port, [BASE + "/#"])
    c, th, addr = make_coord(tmp_path, **mqtt_over(broker.port, interval=3600.0))
    try:
        dev = FakeDevice(addr)
        hello_and_beats(dev)
        assert wait(lambda: states(rec, 17))
        n = len(states(rec, 17))
        alert = tel(6)
        alert["decision_state"] = P.DECISION_ALERT
        dev.send(P.TELEMETRY, alert)
        assert wait(lambda: any(s["decision"] == "ALERT" for s in states(rec, 17)))
        q = tel(7)
        q["decision_state"] = P.DECISION_QUARANTINE | P.STATE_QUARANTINE_LATCHED
        dev.send(P.TELEMETRY, q)
        assert wait(lambda: any(s["decision"] == "QUARANTINE" and s["quarantined"]
                                for s in states(rec, 17)))
        latched = tel(8)                               # latched: QUARANTINE until a CLEAR
        latched["decision_state"] = P.DECISION_NOOP | P.STATE_QUARANTINE_LATCHED
        dev.send(P.TELEMETRY, latched)
        assert wait(lambda: c.counters["beats"] >= 8)
        assert len(states(rec, 17)) == n + 2          # interval 1 h: only the two changes
        # a decision WITNESS (committed to the ledger) is published at once, even when the
        # snapshots never saw that decision in telemetry
        dev2 = FakeDevice(addr, device_id=18, boot_id=0x118)
        hello_and_beats(dev2)
        assert wait(lambda: states(rec, 18))
        dev2.send(P.WITNESS, {"witness_id": 1, "kind": P.WITNESS_DECISION, "beat": 5,
                              "decision": P.DECISION_ALERT, "threat": 42000, "coherence": 30000,
                              "value": 0, "pow_bits": 0, "nonce": 0})
        assert dev2.recv(P.ACK).fields["status"] == P.ACK_OK
        assert wait(lambda: any(s["decision"] == "ALERT" for s in states(rec, 18)))
        w = [s for s in states(rec, 18) if s["decision"] == "ALERT"][0]
        assert w["threat"] == pytest.approx(42000 / 65535, abs=1e-4) and w["beat"] == 5
        assert wait(lambda: c.status()["mqtt"]["decisions_published"] == 1)
        assert wait(lambda: states(rec, 18)[-1]["decision"] == "NOOP")   # telemetry: NOOP
        # CLEAR from MQTT (what Home Assistant's button sends)
        rec.publish(TOPICS.clear(17), "PRESS")
        f = dev.recv(P.CLEAR)
        assert f.fields["reason"] == P.CLEAR_OPERATOR
        assert wait(lambda: c.status()["mqtt"]["commands"] == 1)
        c.ledger.flush(5)
        acts = [e.data for e in c.ledger.entries() if e.data.get("kind") == "action"]
        assert [a["action"] for a in acts] == ["clear"] and acts[0]["device"] == 17
        # wrong payload, unknown device: counted, no crash, nothing sent
        rec.publish(TOPICS.clear(17), "CLEAR")
        rec.publish(TOPICS.clear(99), "PRESS")
        assert wait(lambda: c.status()["mqtt"]["commands_invalid"] == 1 and
                    c.status()["mqtt"]["errors"] == 1)
        assert "device 99" in c.status()["mqtt"]["last_error"]
        assert c.status()["mqtt"]["commands"] == 1
    finally:
        stop(c, th)
        rec.close()


@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_retained_command_is_ignored_and_deleted(tmp_path, broker, protocol):
    rec = Recorder(broker.port, [BASE + "/#"])
    rec.publish(TOPICS.clear(17), "PRESS", retain=True)      # waiting there before the bridge
    c, th, addr = make_coord(tmp_path, **mqtt_over(broker.port, protocol=protocol))
    try:
        dev = FakeDevice(addr)
        hello_and_beats(dev)
        assert wait(lambda: c.status()["mqtt"]["commands_retained_ignored"] == 1)
        if protocol == "v5":      # retained while the bridge is subscribed: still recognised
            rec.publish(TOPICS.clear(17), "PRESS", retain=True)
            assert wait(lambda: c.status()["mqtt"]["commands_retained_ignored"] == 2)
        with pytest.raises(AssertionError):
            dev.recv(P.CLEAR, timeout=1.0)
        c.ledger.flush(5)
        assert not [e for e in c.ledger.entries() if e.data.get("kind") == "action"]
        assert c.status()["mqtt"]["commands"] == 0
        # the bridge deleted it from the broker: a new subscriber gets no retained CLEAR
        rec2 = Recorder(broker.port, [TOPICS.clear(17)])
        time.sleep(0.5)
        assert [m for m in rec2.msgs if m[1]] == []
        rec2.close()
        # a plain (live) press still works
        rec.publish(TOPICS.clear(17), "PRESS")
        dev.recv(P.CLEAR)
    finally:
        stop(c, th)
        rec.close()


def test_broker_restart_reconnects_and_republishes(tmp_path, broker):
    c, th, addr = make_coord(tmp_path, **mqtt_over(broker.port))
    try:
        dev = FakeDevice(addr)
        hello_and_beats(dev)
        assert wait(lambda: c.status()["mqtt"]["connected"] and c.status()["mqtt"]["states_published"])
        broker.stop()
        assert wait(lambda: not c.status()["mqtt"]["connected"])
        for b in range(6, 30):                     # the coordinator keeps working meanwhile
            dev.send(P.TELEMETRY, tel(b))
        assert wait(lambda: c.counters["beats"] >= 29), c.counters
        st = c.status()["mqtt"]
        assert st["disconnects"] == 1 and st["errors"] >= 1
        broker.start()                             # same port, empty (no persistence)
        assert wait(lambda: c.status()["mqtt"]["connects"] == 2, timeout=15)
        rec = Recorder(broker.port, ["homeassistant/#", BASE + "/#"])
        try:
            # announced again (the restarted broker kept nothing)
            assert wait(lambda: discovery_topics(17) <= {t for t, _, _ in rec.msgs}), \
                (rec.msgs, c.status()["mqtt"])
            assert wait(lambda: c.status()["mqtt"]["discovery_published"] == 2 * len(ENTITIES))
            rec.wait(lambda m: m[0] == TOPICS.state(17), what="state after reconnect")
            rec.wait(lambda m: m[0] == TOPICS.status and m[1] == b"online", what="online")
        finally:
            rec.close()
    finally:
        stop(c, th)


def test_password_file_auth_and_never_shown(tmp_path):
    b = Broker(tmp_path, passwords={"hass": "s3cret-Pw"}).start()
    try:
        pw = tmp_path / "mqtt.pw"
        pw.write_text("s3cret-Pw\n")
        os.chmod(pw, 0o600)
        c, th, addr = make_coord(tmp_path, **mqtt_over(b.port, username="hass",
                                                       password_file=str(pw)))
        try:
            assert wait(lambda: c.status()["mqtt"]["connected"])
            st = json.dumps(c.status(), default=str)
            assert "s3cret" not in st and "s3cret" not in repr(c.cfg)
        finally:
            stop(c, th)
        # a wrong password: refused, counted, the coordinator runs on
        pw.write_text("wrong\n")
        c, th, addr = make_coord(tmp_path, **mqtt_over(b.port, username="hass",
                                                       password_file=str(pw)))
        try:
            assert wait(lambda: c.status()["mqtt"]["connect_failures"] >= 1)
            assert not c.status()["mqtt"]["connected"]
            dev = FakeDevice(addr)
            hello_and_beats(dev)
            assert wait(lambda: c.counters["beats"] >= 5)
        finally:
            stop(c, th)
    finally:
        b.stop()


def test_bad_config_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="integrations.mqtt.host is required"):
        load_config(overrides={"integrations.mqtt.enabled": True})
    with pytest.raises(ConfigError, match="integrations.mqtt.password_file needs"):
        load_config(overrides=mqtt_over(1883, password_file="/x"))
    with pytest.raises(ConfigError, match="integrations.mqtt.ca_file"):
        load_config(overrides=mqtt_over(1883, ca_file="/x"))
    with pytest.raises(ConfigError, match="integrations.mqtt.base_topic"):
        load_config(overrides=mqtt_over(1883, base_topic="a/+/b"))
    with pytest.raises(ConfigError, match="integrations.mqtt.discovery_prefix"):
        load_config(overrides=mqtt_over(1883, discovery_prefix="ha/"))
    with pytest.raises(ConfigError, match="integrations.mqtt.protocol"):
        load_config(overrides=mqtt_over(1883, protocol="v4"))
    data = str(tmp_path / "data")
    missing = load_config(overrides=dict(mqtt_over(1883, username="u", password_file=str(
        tmp_path / "nope")), data_dir=data))
    cell = Cell(missing, links=["udp://127.0.0.1:0"])
    with pytest.raises(ConfigError, match="integrations.mqtt.password_file: cannot read"):
        cell.start()
    c = cell.coordinator
    assert c.ledger is None and not any(l.is_open for l in c.links)   # nothing opened
    loose = tmp_path / "loose.pw"
    loose.write_text("pw\n")
    os.chmod(loose, 0o644)
    c = Cell(load_config(overrides=dict(mqtt_over(1883, username="u",
                                                         password_file=str(loose)),
                                               data_dir=data)), links=["udp://127.0.0.1:0"])
    with pytest.raises(ConfigError, match="group/others"):
        c.start()
    assert load_config().integrations.mqtt.enabled is False
    assert Cell(load_config(overrides={"data_dir": data}),
                links=["udp://127.0.0.1:0"]).mqtt is None


def _micropython():
    import shutil
    import sys
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return os.path.exists(exe) or shutil.which("micropython")


@pytest.mark.slow
@pytest.mark.skipif(not _micropython(), reason="the micropython command is not installed")
def test_emulation_quarantine_cleared_from_mqtt(tmp_path, broker):
    """Real firmware (MicroPython unix port): device 2's sensor faults at 3 s -> ALERT, then
    QUARANTINE, seen on MQTT; a Home Assistant button press (PRESS on the CLEAR command topic),
    sent once the fault has passed, releases the quarantine."""
    from becomingone.emulate.faults import parse_faults
    from becomingone.emulate.runner import Emulation
    emu = Emulation(devices=2, duration=None, transport="udp", runtime="micropython",
                    faults=parse_faults("fault=2@3"), data_dir=str(tmp_path / "emu"),
                    config_overrides=mqtt_over(broker.port, interval=0.5))
    rec = Recorder(broker.port, ["homeassistant/#", BASE + "/#"])
    emu.start()
    pressed = None
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end:
            time.sleep(0.2)
            st = states(rec, 2)
            if pressed is None and st and st[-1]["quarantined"] and st[-1]["threat"] < 0.6:
                rec.publish(TOPICS.clear(2), "PRESS")      # the fault has passed: release
                pressed = len(st)
            elif pressed is not None and not st[-1]["quarantined"]:
                break
        st = states(rec, 2)

        def cleared_committed():     # the device's quarantine_cleared WITNESS (mined, sent, ACKed)
            keys = [k for k, kind in list(emu.observer.kinds.items())
                    if k[0] == 2 and kind == P.WITNESS_QUARANTINE_CLEARED]
            return bool(keys) and all(emu.committed(k) for k in keys)
        wait(cleared_committed, timeout=max(5.0, end - time.monotonic()))
    finally:
        emu.shutdown()
        rec.close()
    decisions = [s["decision"] for s in st]
    assert "ALERT" in decisions and "QUARANTINE" in decisions, (pressed, st)
    assert decisions.index("ALERT") < decisions.index("QUARANTINE"), decisions[-30:]
    assert pressed is not None, "device 2 never latched QUARANTINE with the fault passed"
    assert not st[-1]["quarantined"], st[-5:]
    assert discovery_topics(1) | discovery_topics(2) <= {t for t, _, _ in rec.msgs}
    from becomingone.ledger import Ledger
    with Ledger(emu.cfg.ledger_path()) as led:
        data = [e.data for e in led.entries()]
    assert [d["device"] for d in data if d.get("kind") == "action" and
            d.get("action") == "clear"] == [2]
    assert any(d.get("kind") == "witness" and d["device"] == 2 and
               d["witness"] == "quarantine_cleared" for d in data)


def test_emulate_mqtt_flag(tmp_path, broker):
    """`becomingone emulate --mqtt HOST:PORT` bridges the emulated devices; a bad value is a
    clear error."""
    import subprocess
    import sys
    exe = [sys.executable, "-m", "becomingone.cli", "emulate"]
    bad = subprocess.run(exe + ["--mqtt", "127.0.0.1:x", "--duration", "1"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "becomingone: --mqtt '127.0.0.1:x'" in bad.stderr, bad.stderr
    rec = Recorder(broker.port, ["homeassistant/#", "becomingone/#"])
    try:
        r = subprocess.run(exe + ["--devices", "1", "--duration", "6", "--runtime", "cpython",
                                  "--no-live", "--data", str(tmp_path / "emu"),
                                  "--mqtt", "127.0.0.1:%d" % broker.port],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        base = "becomingone/becomingone-primary"
        topics = {t for t, _, _ in rec.msgs}
        assert base + "/device/1/state" in topics, sorted(topics)
        assert "homeassistant/button/becomingone_becomingone-primary/device1_clear/config" in topics
        assert (base + "/status", b"offline", False) in rec.msgs
    finally:
        rec.close()
