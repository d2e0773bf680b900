"""docs/MQTT.md's demo does what it says (issue 15): the device its `--faults fault=D@T` names
reaches QUARANTINE in the emulation (real firmware), and its CLEAR command names that device.
(The old demo's fault=2@5 reached ALERT only: even devices are noisy from the start.)"""
import os
import re
import shutil
import sys

import pytest

from becomingone.emulate.faults import parse_faults
from becomingone.emulate.runner import Emulation
from becomingone.ledger import Ledger

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _runtime():
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return "micropython" if os.path.exists(exe) or shutil.which("micropython") else "cpython"


def test_the_mqtt_demo_reaches_quarantine(tmp_path):
    with open(os.path.join(ROOT, "docs", "MQTT.md"), encoding="utf-8") as f:
        doc = f.read()
    m = re.search(r"bash tools/run\.sh --devices (\d+) --faults (\S+) --mqtt", doc)
    n, spec = int(m.group(1)), m.group(2)
    faults = parse_faults(spec)
    dev, at = faults.fault[0]
    assert re.search(r"device/%d/clear -m PRESS" % dev, doc)
    emu = Emulation(devices=n, duration=at + 12, runtime=_runtime(), faults=faults,
                    data_dir=str(tmp_path / "emu"))
    s = emu.run(live=None)
    assert s["ledger_verified"]
    seen = {}
    with Ledger(os.path.join(str(tmp_path / "emu"), "ledger.sqlite")) as led:
        for e in led.entries():
            d = e.data
            if d.get("kind") == "witness" and d.get("witness") == "decision":
                seen.setdefault(d["device"], set()).add(d["decision"])
    assert "QUARANTINE" in seen.get(dev, set()), seen
