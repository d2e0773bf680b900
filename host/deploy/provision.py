"""Provisioning inputs of a deploy: the host link URL, Wi-Fi credentials, the device id and key.

Secrets (the device key, the Wi-Fi password) are never printed, logged or put in an error
message. The key is a fresh `os.urandom(32)` registered in the host's keystore
(host/ingest/keystore.py: JSON, mode 0600) under the device id; Wi-Fi credentials come from a file
outside the repository or from BECOMINGONE_WIFI_SSID / BECOMINGONE_WIFI_PASSWORD.
"""
import configparser
import ipaddress
import json
import os

from becomingone.deploy.sources import FIRMWARE_ROOT as ROOT
from becomingone.errors import UserError
from becomingone.ingest.keystore import Keystore, parse_device_id

ENV_SSID = "BECOMINGONE_WIFI_SSID"
ENV_PASSWORD = "BECOMINGONE_WIFI_PASSWORD"
DEFAULT_HOST_PORT = 18790  # the host's default UDP link (host/config/load.py links)


def parse_host_url(url, allow_loopback=False):
    """udp://HOST:PORT -> (host, port). A board cannot reach the host's loopback address."""
    if not url or not url.startswith("udp://"):
        raise UserError("--host-url must be udp://HOST:PORT (the host's address on the board's "
                        "network, e.g. udp://192.168.1.20:%d), got %r" % (DEFAULT_HOST_PORT, url))
    hostport = url[len("udp://"):]
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, str(DEFAULT_HOST_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError("--host-url %r: expected udp://HOST:PORT with PORT 1..65535" % url)
    if not allow_loopback:
        loop = host == "localhost"
        try:
            loop = loop or ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
        except ValueError:
            pass
        if loop:
            raise UserError("--host-url %r points at the loopback/unspecified address, which a board "
                            "cannot reach: give the host's address on the board's network" % url)
    return host, int(port)


def _inside_repo(path, root=ROOT):
    p = os.path.realpath(path)
    r = os.path.realpath(root)
    return p == r or p.startswith(r + os.sep)


def load_wifi(wifi_file=None, environ=None, root=ROOT):
    """-> {"ssid": ..., "password": ...} from --wifi-file (JSON object or INI with a [wifi]
    section, keys ssid and password) or else the environment. Raises UserError otherwise."""
    environ = os.environ if environ is None else environ
    if wifi_file:
        if _inside_repo(wifi_file, root):
            raise UserError("--wifi-file %s is inside the repository: keep Wi-Fi credentials out of "
                            "it (put the file elsewhere, or use %s / %s)" % (wifi_file, ENV_SSID, ENV_PASSWORD))
        try:
            with open(wifi_file, "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UserError("cannot read --wifi-file %s (%s)" % (wifi_file, e.strerror)) from None
        if text.lstrip().startswith("{"):
            try:
                d = json.loads(text)
            except ValueError as e:
                raise UserError("--wifi-file %s is not valid JSON (line %d)" % (wifi_file, e.lineno)) from None
        else:
            cp = configparser.ConfigParser()
            try:
                cp.read_string(text)
            except configparser.Error:
                raise UserError("--wifi-file %s is neither a JSON object nor an INI file with a [wifi] "
                                "section" % wifi_file) from None
            if not cp.has_section("wifi"):
                raise UserError("--wifi-file %s: INI files need a [wifi] section with ssid and password"
                                % wifi_file)
            d = dict(cp.items("wifi"))
        origin = "--wifi-file %s" % wifi_file
    elif environ.get(ENV_SSID):
        d = {"ssid": environ.get(ENV_SSID), "password": environ.get(ENV_PASSWORD, "")}
        origin = "the environment (%s)" % ENV_SSID
    else:
        raise UserError("pico_w needs Wi-Fi credentials: give --wifi-file PATH (JSON {\"ssid\": ..., "
                        "\"password\": ...} or INI [wifi] ssid=... password=...) or set %s and %s"
                        % (ENV_SSID, ENV_PASSWORD))
    if not isinstance(d, dict):
        raise UserError("%s: expected an object with keys ssid and password" % origin)
    unknown = sorted(set(d) - {"ssid", "password", "country"})
    if unknown:
        raise UserError("%s: unknown keys %s (allowed: ssid, password, country)" % (origin, ", ".join(unknown)))
    ssid = d.get("ssid")
    pw = d.get("password", "")
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise UserError("%s: ssid must be 1..32 bytes" % origin)
    if ":" in ssid:
        # the firmware takes --wifi SSID:PASSWORD and splits at the first colon
        raise UserError("%s: ssid %r contains ':', which the firmware's --wifi SSID:PASSWORD flag "
                        "cannot carry" % (origin, ssid))
    if not isinstance(pw, str) or not (pw == "" or 8 <= len(pw) <= 63):
        # the length is safe to say; the password itself is never shown
        raise UserError("%s: password must be 8..63 characters (WPA2) or empty for an open network "
                        "(got %d characters)" % (origin, len(pw) if isinstance(pw, str) else -1))
    out = {"ssid": ssid, "password": pw}
    if d.get("country"):
        c = str(d["country"])
        if len(c) != 2 or not c.isalpha():
            raise UserError("%s: country must be a 2-letter code such as DE or US" % origin)
        out["country"] = c.upper()
    out["_origin"] = origin
    return out


def wifi_bytes(wifi):
    return (json.dumps({k: v for k, v in wifi.items() if not k.startswith("_")}, sort_keys=True) + "\n").encode()


def open_keystore(path):
    ks = Keystore(path)  # loads and checks the mode when the file exists
    return ks


def choose_device_id(keystore, requested=None):
    """The requested id, or the next id after the highest one in the keystore (1 when empty)."""
    if requested is not None:
        return parse_device_id(requested)
    ids = keystore.device_ids()
    nxt = (max(ids) + 1) if ids else 1
    if nxt > 65535:
        raise UserError("the keystore has device id 65535: give --device-id N (1..65535) explicitly")
    return nxt


def key_plan(keystore, device_id, policy):
    """policy: "new" (the id must not have a key), "rotate" (replace it), "keep" (deploy the
    registered key). Returns the sentence the plan prints; raises UserError if not possible."""
    has = device_id in keystore
    where = keystore.path
    if policy == "new":
        if has:
            raise UserError("device %d already has a key in %s: pass --rotate-key to replace it, or "
                            "--keep-key to deploy the registered one" % (device_id, where))
        return "a new key would be generated and registered in %s under device id %d" % (where, device_id)
    if policy == "rotate":
        return ("a new key would be generated and replace device %d's key in %s" % (device_id, where)
                if has else
                "a new key would be generated and registered in %s under device id %d" % (where, device_id))
    if policy == "keep":
        if not has:
            raise UserError("--keep-key: device %d has no key in %s (drop --keep-key to create one)"
                            % (device_id, where))
        return "the key registered in %s for device %d would be deployed" % (where, device_id)
    raise ValueError("key policy %r" % (policy,))


def make_key(keystore, device_id, policy):
    """The key bytes to deploy (generated now for new/rotate; registered by `register_key`)."""
    if policy == "keep":
        return keystore.get(device_id)
    return os.urandom(32)


def register_key(keystore, device_id, key, policy):
    if policy == "keep":
        return
    keystore.add(device_id, key, replace=(policy == "rotate"))
