"""A real Mosquitto broker on 127.0.0.1 for tests and `becomingone bench mqtt` (Debian package
`mosquitto`; .ci/run installs it).

    b = Broker(folder, passwords={"user": "secret"}).start()   # a free port; anonymous without passwords
    b.port; b.stop(); b.start()      # stopped by PID; started again on the same port
"""
import os
import shutil
import socket
import subprocess
import time

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def have_mosquitto():
    return os.path.exists(MOSQUITTO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto broker this process started on a free loopback port (stopped by PID)."""
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
