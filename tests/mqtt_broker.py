"""A real Mosquitto broker for tests (host/bench/mosquitto.py) and a recording paho subscriber.

    b = Broker(tmp_path, passwords={"user": "secret"}).start()   # 127.0.0.1, a free port
    b.port; b.stop(); b.start()      # stop by PID; start again on the same port
    sub = Recorder(b.port, ["homeassistant/#", "becomingone/#"])
    sub.wait(lambda msg: ..., timeout=5)  ->  the matching (topic, payload, retain) list
"""
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from becomingone.bench.mosquitto import Broker, free_port, have_mosquitto  # noqa: F401


class Recorder:
    """A paho client (MQTT v5) that records (topic, payload bytes, retain) of what it receives."""

    def __init__(self, port, topics, auth=None):
        self.msgs = []
        self.connected = False
        c = self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if auth:
            c.username_pw_set(*auth)
        c.on_message = lambda cl, ud, m: self.msgs.append((m.topic, bytes(m.payload), m.retain))

        def on_connect(cl, ud, flags, rc, props):
            cl.subscribe([(t, 1) for t in topics])
            self.connected = True
        c.on_connect = on_connect
        c.connect("127.0.0.1", port, 30)
        c.loop_start()
        self.wait_connected()

    def wait_connected(self, timeout=5.0):
        end = time.time() + timeout
        while not self.connected and time.time() < end:
            time.sleep(0.01)
        assert self.connected, "recorder did not connect"

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def wait(self, pred, timeout=5.0, what="messages"):
        end = time.time() + timeout
        while time.time() < end:
            got = [m for m in list(self.msgs) if pred(m)]
            if got:
                return got
            time.sleep(0.02)
        raise AssertionError("no %s within %.0f s; got %d messages: %s"
                             % (what, timeout, len(self.msgs), [m[0] for m in self.msgs][-20:]))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
