"""A real Mosquitto broker for tests (Debian package `mosquitto`; .ci/run installs it) and a
recording paho subscriber.

    b = Broker(tmp_path, passwords={"user": "secret"}).start()   # 127.0.0.1, a free port
    b.port; b.stop(); b.start()      # stop by PID; start again on the same port
    sub = Recorder(b.port, ["homeassistant/#", "becomingone/#"])
    sub.wait(lambda msgs: ..., timeout=5)  ->  the matching list (AssertionError on timeout)
"""
import os
import shutil
import socket
import subprocess
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def have_mosquitto():
    return os.path.exists(MOSQUITTO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, folder, passwords=None, port=None):
        self.folder = str(folder)
        self.port = port or free_port()
        self.passwords = passwords
        self.proc = None
        self.log = os.path.join(self.folder, "mosquitto.log")

    def _conf(self):
        lines = ["listener %d 127.0.0.1" % self.port, "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")          # keep reading files from the test's tmp folder
        if self.passwords:
            pw = os.path.join(self.folder, "mosquitto.passwd")
            open(pw, "w").close()
            for user, password in self.passwords.items():
                subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True,
                               capture_output=True)
            os.chmod(pw, 0o600)
            lines += ["allow_anonymous false", "password_file " + pw]
        else:
            lines.append("allow_anonymous true")
        path = os.path.join(self.folder, "mosquitto.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, timeout=10.0):
        conf = self._conf()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited (%s): %s"
                                     % (self.proc.returncode, open(self.log).read()[-2000:]))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("mosquitto did not listen on %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


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
