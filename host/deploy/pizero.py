"""`becomingone flash --board pizero`: builds an install bundle for a Raspberry Pi Zero (W).

A Pi Zero runs the firmware on CPython with Adafruit Blinka (busio I2C to an ADS1115: a Pi has
no ADC). It is not flashed over a port: this builds a folder and a .tar.gz holding

    device/ shared/ boards/__init__.py boards/pizero.py   the firmware, as .py sources
    boardcfg.json device.key (0600)                       board config, device key
    start.py                                              the same starter as a Pico's main.py
    requirements-pizero.txt                               adafruit-blinka
    becomingone-device.service                            systemd unit (Restart=always)
    install.sh                                            venv + pip install + systemd, run as root

registers the key in the host's keystore, and prints the commands that copy the bundle to the
Pi and install it (scp + ssh: this command does not log into the Pi itself).
The bundle holds the device key: it is created 0700/0600 and should be deleted once installed.
"""
import os
import shlex
import shutil
import tarfile

from becomingone.errors import UserError
from becomingone.ingest.keystore import fingerprint
from becomingone.deploy import plan as P
from becomingone.deploy import provision as V

INSTALL_DIR = "/opt/becomingone-device"
REQUIREMENTS = "adafruit-blinka>=8\n"

SERVICE_TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "deploy", "systemd", "becomingone-device.service")


def service_unit(device_id, user="becomingone", directory=INSTALL_DIR):
    """deploy/systemd/becomingone-device.service for this device (the one unit file: Type=notify
    with the firmware pinging systemd's watchdog, the state directory of the QUARANTINE latch)."""
    with open(SERVICE_TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    return (text.replace("@DEVICE_ID@", str(int(device_id))).replace("@DIR@", directory)
            .replace("@USER@", user))


INSTALL_SH = """#!/bin/sh
# Installs the BecomingONE device firmware on this Pi (run as root from the bundle folder).
set -eu
DIR=%(dir)s
USER_NAME=%(user)s
id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --groups i2c,gpio "$USER_NAME"
mkdir -p "$DIR"
cp -r device shared boards start.py boardcfg.json requirements-pizero.txt "$DIR"/
install -m 0600 device.key "$DIR"/device.key
chown -R "$USER_NAME":"$USER_NAME" "$DIR"
# the ADS1115 ready pin's edge events come from libgpiod's Python bindings (Debian's, seen by
# the venv); without them the firmware polls the ADC instead and says so in its log
apt-get install -y python3-libgpiod >/dev/null 2>&1 || \
    echo "warning: python3-libgpiod not installed: the ADS1115 will be polled, not read on ALERT/RDY"
python3 -m venv --system-site-packages "$DIR"/venv
"$DIR"/venv/bin/pip install -q -r "$DIR"/requirements-pizero.txt
install -m 0644 becomingone-device.service /etc/systemd/system/becomingone-device.service
systemctl daemon-reload
systemctl enable --now becomingone-device.service
echo "installed in $DIR; logs: journalctl -u becomingone-device -f"
"""


def bundle_extras(plan, user="becomingone"):
    """Generated files of the bundle besides the firmware, config and key: (name, bytes, mode)."""
    d = {"device_id": plan["device_id"], "dir": INSTALL_DIR, "user": user}
    return [("start.py", P.root_main_source(), 0o644),
            ("requirements-pizero.txt", REQUIREMENTS.encode(), 0o644),
            ("becomingone-device.service", service_unit(plan["device_id"], user).encode(), 0o644),
            ("install.sh", (INSTALL_SH % d).encode(), 0o755)]


def default_out(plan):
    return os.path.join("dist", "pizero-device-%d" % plan["device_id"])


def describe_steps(out):
    name = os.path.basename(out.rstrip("/"))
    q = shlex.quote
    return ["copy it to the Pi and install it (as root there):",
            "  scp %s.tar.gz pi@raspberrypi.local:" % q(out),
            "  ssh pi@raspberrypi.local 'tar xzf %s.tar.gz && cd %s && sudo ./install.sh'" % (q(name), q(name)),
            "then delete the bundle on both machines (it holds the device key):",
            "  rm -rf %s %s.tar.gz" % (q(out), q(out))]


def build_bundle(plan, args):
    out = plan["out"] or default_out(plan)
    if os.path.exists(out) and os.listdir(out):
        raise UserError("--out %s exists and is not empty: remove it or choose another folder" % out)
    ks, device_id, policy = plan["keystore"], plan["device_id"], plan["policy"]
    key = V.make_key(ks, device_id, policy)
    items = plan["items"]
    for it in items:
        if it.kind == "key":
            it.data = key
    os.makedirs(out, mode=0o700, exist_ok=True)
    os.chmod(out, 0o700)
    try:
        P.build(items, "pizero", staging=out)
        for name, data, mode in bundle_extras(plan):
            path = os.path.join(out, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(path, mode)
        tgz = out.rstrip("/") + ".tar.gz"
        fd = os.open(tgz, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(out, arcname=os.path.basename(out.rstrip("/")))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    V.register_key(ks, device_id, key, policy)
    n = sum(os.path.getsize(os.path.join(dp, f)) for dp, _d, fs in os.walk(out) for f in fs)
    print("pizero bundle for device %d: %s/ and %s (%d bytes, %d files)" % (
        device_id, out, tgz, n, len(items) + len(bundle_extras(plan))))
    print("device %d: key %s in %s (fingerprint %s)" % (
        device_id, "kept" if policy == "keep" else "registered", ks.path, fingerprint(key)))
    for line in describe_steps(out):
        print(line)
    return 0
