"""Signed checkpoints in the C2SP tlog-checkpoint / signed-note format (docs/LEDGER.md §6).

    <origin>\\n
    <tree size, decimal>\\n
    <base64 root hash (std alphabet, padded)>\\n
    timestamp <Unix milliseconds, decimal>\\n
    \\n
    \\u2014 <origin> <base64(key_id[4] || ed25519_signature[64])>\\n

The signature is Ed25519 over the note body: every byte before the blank line (the four lines
with their newlines). key_id = SHA-256(origin || 0x0A || 0x01 || raw 32-byte public key)[:4].
The key is generated on first use, OUTSIDE the data folder (docs/LEDGER.md §6, §12): in
`<key dir>/<origin's 16 hex digits>/ledger-signing.key` (PKCS#8 PEM, mode 0600, never printed),
the key dir being ledger.key_dir, else $BECOMINGONE_KEY_DIR, else
$XDG_CONFIG_HOME/becomingone/ledger-keys, else ~/.config/becomingone/ledger-keys. A ledger made
before that keeps the key it has beside the database. The public key (`ledger-signing.pub`,
SubjectPublicKeyInfo PEM) is written beside the private key and copied beside the database,
where readers of the data folder (exports, replicas, witnesses) find it.
"""
import base64
import hashlib
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from becomingone.errors import UserError
from becomingone.util.atomic import atomic_write, write_private

KEY_FILE = "ledger-signing.key"
PUB_FILE = "ledger-signing.pub"
DASH = "\u2014"


class CheckpointError(ValueError):
    """A checkpoint note is malformed or its signature does not verify."""


def raw_public(pub):
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(origin, pub_raw):
    return hashlib.sha256(origin.encode("utf-8") + b"\n\x01" + pub_raw).digest()[:4]


KEY_DIR_ENV = "BECOMINGONE_KEY_DIR"


def default_key_dir():
    """Where ledgers' signing keys live unless ledger.key_dir says otherwise (module docstring)."""
    d = os.environ.get(KEY_DIR_ENV)
    if d:
        return os.path.abspath(os.path.expanduser(d))
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "becomingone", "ledger-keys")


def ledger_key_folder(ledger_path, origin, key_dir=None):
    """The folder of a ledger's signing key: beside the database when a key is there already (a
    ledger made before keys moved out), else <key dir>/<the origin's hex digits>."""
    here = os.path.dirname(os.path.abspath(ledger_path))
    if os.path.exists(os.path.join(here, KEY_FILE)):
        return here
    return os.path.join(os.path.abspath(os.path.expanduser(key_dir)) if key_dir else default_key_dir(),
                        origin.rsplit("/", 1)[-1])


def public_pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_from(folder):
    """The public key kept in `folder` (from its private key when present, else its .pub) without
    creating anything; None when neither is there."""
    kpath = os.path.join(folder, KEY_FILE)
    if os.path.exists(kpath):
        with open(kpath, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None).public_key()
    ppath = os.path.join(folder, PUB_FILE)
    if os.path.exists(ppath):
        return load_public_key(ppath)
    return None


def load_or_create_key(folder):
    """(private key, public key) of the ledger in `folder`, generated on first use."""
    kpath = os.path.join(folder, KEY_FILE)
    ppath = os.path.join(folder, PUB_FILE)
    if not os.path.exists(kpath):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = kpath + ".tmp%d" % os.getpid()
        write_private(tmp, pem)
        try:
            os.link(tmp, kpath)  # fails if another process created the key meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        with open(kpath, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (ValueError, TypeError) as e:
        raise UserError("ledger signing key %s is unreadable (%s); restore it from a backup "
                        "(a new key would not match the old checkpoints)" % (kpath, e)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError("ledger signing key %s is not an Ed25519 key" % kpath)
    pub = key.public_key()
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not os.path.exists(ppath) or open(ppath, "rb").read() != pem:
        with atomic_write(ppath, binary=True) as f:
            f.write(pem)
    return key, pub


def load_public_key(pem_or_path):
    data = pem_or_path
    if isinstance(pem_or_path, str):
        with open(pem_or_path, "rb") as f:
            data = f.read()
    pub = serialization.load_pem_public_key(data)
    if not isinstance(pub, Ed25519PublicKey):
        raise CheckpointError("public key is not Ed25519")
    return pub


def note_body(origin, size, root, timestamp_ms):
    if "\n" in origin or not origin:
        raise CheckpointError("origin must be one non-empty line")
    return "%s\n%d\n%s\ntimestamp %d\n" % (origin, size, base64.b64encode(root).decode("ascii"),
                                           timestamp_ms)


def sign_note(key, origin, size, root, timestamp_ms):
    body = note_body(origin, size, root, timestamp_ms)
    sig = key.sign(body.encode("utf-8"))
    kid = key_id(origin, raw_public(key.public_key()))
    return body + "\n" + "%s %s %s\n" % (DASH, origin, base64.b64encode(kid + sig).decode("ascii"))


def parse_note(text):
    """-> dict(origin, size, root (bytes), timestamp_ms, body, signatures=[(name, bytes)])."""
    if "\n\n" not in text:
        raise CheckpointError("checkpoint has no blank line between body and signatures")
    body, sigs = text.split("\n\n", 1)
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 4:
        raise CheckpointError("checkpoint body needs 4 lines (origin, size, root, timestamp)")
    origin, size_s, root_s, ts_s = lines[:4]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise CheckpointError("checkpoint size %r is not a decimal integer" % size_s)
    try:
        root = base64.b64decode(root_s, validate=True)
    except ValueError:
        raise CheckpointError("checkpoint root %r is not base64" % root_s) from None
    if len(root) != 32:
        raise CheckpointError("checkpoint root is %d bytes (32 expected)" % len(root))
    if not ts_s.startswith("timestamp ") or not ts_s[10:].isdigit():
        raise CheckpointError("checkpoint line 4 %r is not 'timestamp <ms>'" % ts_s)
    signatures = []
    for line in sigs.split("\n"):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise CheckpointError("bad signature line %r" % line)
        try:
            signatures.append((parts[1], base64.b64decode(parts[2], validate=True)))
        except ValueError:
            raise CheckpointError("signature line is not base64") from None
    return {"origin": origin, "size": int(size_s), "root": root, "timestamp_ms": int(ts_s[10:]),
            "body": body, "signatures": signatures}


def verify_note(text, pub):
    """Parse and check the signature by `pub` (named by the note's origin). -> parsed dict."""
    note = parse_note(text)
    raw = raw_public(pub)
    kid = key_id(note["origin"], raw)
    for name, blob in note["signatures"]:
        if name == note["origin"] and blob[:4] == kid and len(blob) == 68:
            try:
                pub.verify(blob[4:], note["body"].encode("utf-8"))
                return note
            except InvalidSignature:
                raise CheckpointError("checkpoint signature does not verify (size %d)" % note["size"]) from None
    raise CheckpointError("checkpoint has no signature by this ledger's key (origin %r)" % note["origin"])
