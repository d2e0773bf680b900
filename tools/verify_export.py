#!/usr/bin/env python3
"""Independent verifier of a `becomingone ledger export` folder, written only from
docs/LEDGER.md (§1-§7). Uses the standard library and `cryptography`; imports nothing from
this project.

    python tools/verify_export.py EXPORT_DIR [--pubkey-b64 RAW_B64] [--json]

Exit 0 when everything checks, 1 naming the first bad line / check, 2 on usage errors."""
import argparse
import base64
import hashlib
import json
import math
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Bad(Exception):
    pass


def H(b):
    return hashlib.sha3_256(b).digest()


# ---- §1 canonical JSON, re-implemented from the rules (not with sort_keys shortcuts alone)
def _esc(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= o <= 0x7E:
            out.append(ch)
        elif 0xD800 <= o <= 0xDFFF:
            raise Bad("lone surrogate in string")
        elif o > 0xFFFF:
            v = o - 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)))
        else:
            out.append("\\u%04x" % o)
    out.append('"')
    return "".join(out)


def _float(x):
    if math.isnan(x) or math.isinf(x):
        raise Bad("NaN/Infinity")
    if x == 0.0:
        return "0.0" if math.copysign(1, x) > 0 else "-0.0"  # -0.0 must never appear (normalised)
    # shortest round-trip digits: Python's repr gives them; rebuild the layout from §1 ourselves
    r = repr(abs(x))
    mant, _, exp = r.partition("e")
    digits = mant.replace(".", "")
    point = mant.index(".") if "." in mant else len(mant)
    p = point + (int(exp) if exp else 0)  # value = 0.d1d2... x 10^p after stripping zeros
    stripped = digits.lstrip("0")
    p -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    sign = "-" if x < 0 else ""
    if -4 < p <= 16:
        if p <= 0:
            s = "0." + "0" * (-p) + digits
        elif p >= len(digits):
            s = digits + "0" * (p - len(digits)) + ".0"
        else:
            s = digits[:p] + "." + digits[p:]
    else:
        e = p - 1
        s = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + "e%s%02d" % ("-" if e < 0 else "+", abs(e))
    return sign + s


def canon(v):
    t = type(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        if not -(2 ** 63) <= v <= 2 ** 63 - 1:
            raise Bad("integer out of range")
        return str(v)
    if t is float:
        return _float(v)
    if t is str:
        return _esc(v)
    if t is list:
        return "[" + ",".join(canon(x) for x in v) + "]"
    if t is dict:
        return "{" + ",".join(_esc(k) + ":" + canon(v[k]) for k in sorted(v)) + "}"
    raise Bad("type %s not allowed" % t.__name__)


# ---- §3 tree
def mth(leaves, lo, hi):
    n = hi - lo
    if n == 0:
        return H(b"")
    if n == 1:
        return leaves[lo]
    k = 1
    while k * 2 < n:
        k *= 2
    return H(b"\x01" + mth(leaves, lo, lo + k) + mth(leaves, lo + k, hi))


def root_of(leaves):
    """MTH iteratively: the same tree as the recursion, built from complete power-of-two blocks."""
    stack = []  # (size, hash)
    for lf in leaves:
        size, h = 1, lf
        while stack and stack[-1][0] == size:
            h = H(b"\x01" + stack.pop()[1] + h)
            size *= 2
        stack.append((size, h))
    if not stack:
        return H(b"")
    r = stack[-1][1]
    for _s, h in reversed(stack[:-1]):
        r = H(b"\x01" + h + r)
    return r


# ---- §6 checkpoint
def check_note(text, pub):
    if "\n\n" not in text:
        raise Bad("checkpoint: no blank line")
    body, sigs = text.split("\n\n", 1)
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) != 4 or not lines[3].startswith("timestamp "):
        raise Bad("checkpoint body is not origin/size/root/timestamp")
    origin = lines[0]
    size = int(lines[1])
    root = base64.b64decode(lines[2], validate=True)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()[:4]
    for line in sigs.split("\n"):
        if not line:
            continue
        dash, name, b64 = line.split(" ")
        if dash != "\u2014":
            raise Bad("checkpoint signature line does not start with an em dash")
        blob = base64.b64decode(b64, validate=True)
        if name == origin and blob[:4] == kid:
            try:
                pub.verify(blob[4:], body.encode("utf-8"))
            except InvalidSignature:
                raise Bad("checkpoint signature does not verify") from None
            return origin, size, root
    raise Bad("checkpoint has no signature by the given key")


def verify(folder, pin_b64=None):
    with open(os.path.join(folder, "public_key.pem"), "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    if not isinstance(pub, Ed25519PublicKey):
        raise Bad("public_key.pem is not an Ed25519 key")
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if pin_b64 is not None and base64.b64decode(pin_b64) != raw:
        raise Bad("public_key.pem is not the pinned key")
    with open(os.path.join(folder, "checkpoint.txt"), encoding="utf-8") as f:
        origin, cp_size, cp_root = check_note(f.read(), pub)
    leaves = []
    prev = "0" * 64
    genesis = None
    with open(os.path.join(folder, "entries.jsonl"), "rb") as f:
        for i, raw_line in enumerate(f):
            where = "line %d (entry %d)" % (i + 1, i)
            if not raw_line.endswith(b"\n"):
                raise Bad("%s: missing newline" % where)
            line = raw_line[:-1].decode("ascii")
            e = json.loads(line)
            if type(e) is not dict or sorted(e) != ["data", "hash", "index", "previous_hash", "timestamp"]:
                raise Bad("%s: not an entry object" % where)
            if canon(e) != line:
                raise Bad("%s: not canonical JSON" % where)
            if e["index"] != i:
                raise Bad("%s: index is %r" % (where, e["index"]))
            if type(e["timestamp"]) is not float or type(e["data"]) is not dict \
                    or type(e["data"].get("kind")) is not str:
                raise Bad("%s: timestamp must be a float and data an object with a kind" % where)
            if (i == 0) != (e["data"]["kind"] == "genesis"):
                raise Bad("%s: genesis must be exactly entry 0" % where)
            if e["previous_hash"] != prev:
                raise Bad("%s: previous_hash does not link to entry %d" % (where, i - 1))
            hin = canon({"data": e["data"], "index": i, "previous_hash": prev, "timestamp": e["timestamp"]})
            h = hashlib.sha3_256(hin.encode("ascii")).hexdigest()
            if h != e["hash"]:
                raise Bad("%s: hash does not match its fields (recomputed %s)" % (where, h))
            if i == 0:
                genesis = h
            leaves.append(H(b"\x00" + bytes.fromhex(h)))
            prev = h
    if genesis is None:
        raise Bad("no entries")
    if origin != "becomingone.ledger/" + genesis[:16]:
        raise Bad("checkpoint origin %r does not name this ledger's genesis" % origin)
    if cp_size != len(leaves):
        raise Bad("checkpoint size %d but %d entries exported" % (cp_size, len(leaves)))
    root = root_of(leaves)
    if len(leaves) <= 4096 and mth(leaves, 0, len(leaves)) != root:
        raise Bad("internal: tree builders disagree")
    if root != cp_root:
        raise Bad("root of the exported entries differs from the signed checkpoint root")
    return {"ok": True, "size": len(leaves), "root": root.hex(), "origin": origin,
            "public_key_raw_b64": base64.b64encode(raw).decode()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--pubkey-b64", default=None, help="pin the expected raw Ed25519 public key")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        res = verify(a.folder, a.pubkey_b64)
    except (Bad, ValueError, KeyError, OSError) as e:
        msg = "export %s FAILED: %s" % (a.folder, e)
        print(json.dumps({"ok": False, "error": str(e)}) if a.json else msg)
        return 1
    print(json.dumps(res) if a.json else "export %s OK: %d entries, root %s, signed by %s"
          % (a.folder, res["size"], res["root"], res["public_key_raw_b64"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
