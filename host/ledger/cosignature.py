"""Cosignatures of checkpoints (C2SP tlog-cosignature v1, Ed25519; docs/LEDGER.md §11).

A cosignature is a signed-note signature line added to a checkpoint by a *witness*:

    — <witness name> base64(key_id[4] || timestamp u64 big-endian || Ed25519 signature[64])

key_id = SHA-256(<name> || "\\n" || 0x04 || 32-byte public key)[:4]; the signature covers

    cosignature/v1\\n
    time <timestamp, decimal Unix seconds>\\n
    <the checkpoint's note body: every line before the blank line, each with its newline>

A witness key is named by a vkey (C2SP signed-note): `<name>+<8 hex key id>+<base64(0x04 ||
public key)>`, or given as base64 of the raw 32-byte key (the name then comes separately).

    line = cosign(private_key, name, body, timestamp)
    ts = verify_line(line, body, name, public_key)    # CosignatureError when it does not verify
    cosignature_lines(note) -> [(name, blob)]           # every signature line of a note text
    key_id(name, raw), vkey(name, raw), parse_vkey(text) -> (name, raw)
"""
import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from becomingone.ledger.checkpoint import DASH, CheckpointError, raw_public

__all__ = ["cosign", "verify_line", "key_id", "vkey", "parse_vkey", "public_key_of",
           "cosignature_lines", "CosignatureError", "ALG_COSIGNATURE_V1", "HEADER"]

ALG_COSIGNATURE_V1 = 0x04
HEADER = b"cosignature/v1\n"


class CosignatureError(CheckpointError):
    """A cosignature line is malformed or does not verify."""


def key_id(name, raw):
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + raw).digest()[:4]


def vkey(name, raw):
    return "%s+%s+%s" % (name, key_id(name, raw).hex(),
                         base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + raw).decode("ascii"))


def parse_vkey(text):
    """(name, raw 32-byte key) of a cosigner vkey; CosignatureError when it is not one."""
    parts = text.strip().split("+", 2)          # the name has no "+", base64 may
    if len(parts) != 3:
        raise CosignatureError("%r is not a vkey (name+keyid+base64)" % text)
    name, kid, b64 = parts
    try:
        blob = base64.b64decode(b64, validate=True)
    except ValueError:
        raise CosignatureError("vkey %r: key is not base64" % text) from None
    if len(blob) != 33 or blob[0] != ALG_COSIGNATURE_V1:
        raise CosignatureError("vkey %r: not an Ed25519 cosigner key (type 0x04, 32 bytes)" % text)
    if key_id(name, blob[1:]).hex() != kid.lower():
        raise CosignatureError("vkey %r: key id does not match its name and key" % text)
    return name, blob[1:]


def public_key_of(text, name=None):
    """(name, Ed25519PublicKey) from a vkey, or from base64 of the raw key with `name`."""
    if "+" in text:
        n, raw = parse_vkey(text)
        if name is not None and n != name:
            raise CosignatureError("vkey names %r, configured name is %r" % (n, name))
        return n, Ed25519PublicKey.from_public_bytes(raw)
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise CosignatureError("witness key %r is neither a vkey nor base64" % text) from None
    if len(raw) != 32 or name is None:
        raise CosignatureError("witness key: 32 raw bytes in base64 and a name needed")
    return name, Ed25519PublicKey.from_public_bytes(raw)


def _message(body, timestamp):
    if not body.endswith("\n"):
        raise CosignatureError("a note body ends with a newline")
    return HEADER + b"time %d\n" % timestamp + body.encode("utf-8")


def cosign(private_key, name, body, timestamp):
    """The cosignature line (with its newline) of `private_key` named `name` over `body`."""
    if not 0 <= timestamp < 2 ** 63:
        raise CosignatureError("cosignature timestamp %r out of range" % (timestamp,))
    raw = raw_public(private_key.public_key())
    sig = private_key.sign(_message(body, timestamp))
    blob = key_id(name, raw) + struct.pack(">Q", timestamp) + sig
    return "%s %s %s\n" % (DASH, name, base64.b64encode(blob).decode("ascii"))


def _blob_of(line):
    line = line.rstrip("\n")
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != DASH:
        raise CosignatureError("bad signature line %r" % line[:120])
    try:
        return parts[1], base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise CosignatureError("signature line is not base64") from None


def verify_line(line, body, name, public_key):
    """The timestamp of cosignature `line` by (name, public_key) over `body`;
    CosignatureError when the line is not theirs or does not verify."""
    n, blob = _blob_of(line)
    raw = raw_public(public_key)
    if n != name or len(blob) != 76 or blob[:4] != key_id(name, raw):
        raise CosignatureError("not a cosignature by %s" % name)
    ts = struct.unpack(">Q", blob[4:12])[0]
    try:
        public_key.verify(blob[12:], _message(body, ts))
    except InvalidSignature:
        raise CosignatureError("cosignature by %s does not verify" % name) from None
    return ts


def cosignature_lines(text):
    """Every signature line of a note (or a witness response: signature lines only)."""
    sigs = text.split("\n\n", 1)[1] if "\n\n" in text else text
    return [ln + "\n" for ln in sigs.split("\n") if ln.startswith(DASH + " ")]
