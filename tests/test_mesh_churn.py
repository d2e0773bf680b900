"""Churn without storms, replayed against real processes: a real coordinator (`becomingone run`,
sync.backend nats) on a real nats-server on 127.0.0.1, 19 more cells (NatsMesh, each with its
own ledger, key and NATS connection) in this process, and a fake device on the coordinator's UDP
link that ACKs CONFIG. The mesh moves the device's pulse P to 20 (alone at first: 1); then cells die and
come back one at a time for 15 s (the live count swings 18..20): the device is sent nothing more
and the coordinator's ledger gets no more `mesh:pulse` entries; then four cells leave for good
(20 -> 16, beyond the band): one entry and one CONFIG (its period changes 4051 -> 4063 µs).
Before the band and the period test, each swing was a CONFIG and a ledger entry per device."""
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from becomingone.ledger import Ledger
from becomingone.mesh.trust import write_trust
from shared import protocol as P
from tests.test_coordinator import HELLO, tel
from tests.test_mesh_coordinator_procs import ROOT, Device, ledger_rows
from tests.test_mesh_node_procs import wait

nats = pytest.importorskip("nats")
from becomingone.bench.nats_server import SERVER, nats_server  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(SERVER is None, reason="nats-server not installed")]

SIDE = ["cell-%02d" % i for i in range(1, 20)]


class SideCells:
    """19 NatsMesh cells on an asyncio loop in a thread; stop() / start() one by name."""

    def __init__(self, url, base, trust):
        self.url, self.base, self.trust = url, base, trust
        self.leds = {}
        for c in SIDE:
            os.makedirs(os.path.join(base, c), exist_ok=True)
            self.leds[c] = Ledger(os.path.join(base, c, "ledger.sqlite"))
            write_trust(trust, c, self.leds[c])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks, self.meshes = {}, {}

    def _call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, c):
        from becomingone.mesh.backends.nats import NatsMesh

        async def go():
            m = NatsMesh(self.url, c, self.leds[c], self.trust, os.path.join(self.base, c, "replicas"),
                         interval=0.2, member_ttl=1.0, publish_every=0.5, write_own_trust=False)
            await m.start()
            self.meshes[c] = m

            async def run():
                while True:
                    await m.period(0.2 + 0.1j, 2)
                    await asyncio.sleep(0.2)
            self.tasks[c] = asyncio.ensure_future(run())
        self._call(go())

    def stop(self, c):
        async def go():
            self.tasks.pop(c).cancel()
            m = self.meshes.pop(c)
            await m.nats.nc.close()            # killed: its connection drops, nothing said
            m.store.close()
        self._call(go())

    def close(self):
        for c in list(self.tasks):
            self.stop(c)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        for led in self.leds.values():
            led.close()


def test_churn_moves_the_pulse_once_and_sends_nothing(tmp_path):
    base = str(tmp_path)
    trust = os.path.join(base, "trust")
    with nats_server(os.path.join(base, "js")) as url:
        data = os.path.join(base, "cell-a")
        os.makedirs(data)
        with Ledger(os.path.join(data, "ledger.sqlite")) as led:
            write_trust(trust, "cell-a", led)
        cfg = {"becomingone": {"name": "cell-a"}, "data_dir": data, "security": {"intrinsic": False},
               "ledger": {"pulse_summary_every": 0}, "devices": {"session_timeout_s": 120.0},
               "sync": {"mesh_enabled": True, "backend": "nats",
                        "nats": {"url": url, "member_ttl": 1.0},
                        "mesh": {"interval": 0.2, "checkpoint_interval": 0.5, "trust_dir": trust,
                                 "pulse_hysteresis": 0.1}}}
        path = os.path.join(base, "cell-a.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        side = SideCells(url, base, trust)
        ready = os.path.join(base, "cell-a.ready")
        proc = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "run", "--config", path, "--link",
                                 "udp://127.0.0.1:0", "--ready-file", ready, "--quiet", "--no-http"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dev = None
        try:
            assert wait(lambda: os.path.exists(ready) or proc.poll() is not None, 30)
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            with open(ready) as f:
                info = json.load(f)
            host, port = info["links"][0][6:].rsplit(":", 1)
            for c in SIDE:
                side.start(c)
            dev = Device((host, int(port)))
            dev.thread.start()
            dev.send(P.HELLO, HELLO)
            beat = [0]

            def feed():
                for _ in range(20):
                    beat[0] += 1
                    dev.send(P.TELEMETRY, tel(beat[0]))     # the device stays online
            feed()
            assert wait(lambda: (feed() or True) and dev.pulse_p[-1:] == [20.0], 60), dev.pulse_p
            led_path = os.path.join(data, "ledger.sqlite")

            def moves():
                return [d["change"]["pulse_p"][1] for d in ledger_rows(led_path, '%"target":"mesh:pulse"%')]
            # alone at first (P 1), then the mesh of 20
            assert wait(lambda: moves()[-1:] == [20.0], 10), moves()
            before, sent = len(moves()), list(dev.pulse_p)
            # churn: one cell down, another back, every 1.5 s, for 15 s (live count 18..20)
            t_end = time.time() + 15.0
            k = 0
            while time.time() < t_end:
                c = SIDE[k % len(SIDE)]
                side.stop(c)
                feed()
                time.sleep(1.5)
                side.start(c)
                k += 1
            feed()
            time.sleep(2.0)
            assert dev.pulse_p == sent and len(moves()) == before, (dev.pulse_p, moves())
            # a real change: four cells leave for good (beyond the band of 2)
            for c in SIDE[-4:]:
                side.stop(c)
            assert wait(lambda: (feed() or True) and dev.pulse_p[-1:] == [16.0], 30), dev.pulse_p
            time.sleep(1.0)
            rows = ledger_rows(led_path, '%"target":"mesh:pulse"%')
            assert dev.pulse_p == sent + [16.0] and len(rows) == before + 1
            assert (rows[-1]["period_us_before"], rows[-1]["period_us"]) == (4051, 4063)
            assert not [d for d in ledger_rows(led_path, '%"target":"device:%') if "pulse_p" in d["change"]]
        finally:
            if dev is not None:
                dev.stop_ev.set()
            proc.terminate()                       # by PID: the coordinator we started
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            side.close()
