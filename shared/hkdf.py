# HKDF-SHA256 (RFC 5869) and the session key of the handshake (docs/PROTOCOL.md section 4.1).
# The device derives its session keys here (device/session.py imports this module only when a
# handshake happens: it costs no resident heap on a board); the host derives the same keys with
# the cryptography package (becomingone.wire.handshake) from the same salt and info, defined
# once below. hashlib.sha256 is native on both runtimes; a derivation allocates a few hash
# objects, which is fine: it runs once per handshake, never in the beat.
#
#   hkdf_sha256(salt, ikm, info, length=32) -> bytes          RFC 5869 Extract-then-Expand
#   session_salt(host_nonce, device_nonce) -> 32 bytes         host nonce || device nonce
#   session_info(device_id, boot_id) -> bytes                  label || device_id u16 || boot_id u16
#   session_key(key, host_nonce, device_nonce, device_id, boot_id) -> 32-byte session key
import hashlib
import struct

INFO_LABEL = b"becomingone session v3"
NONCE_LEN = 16


def _hmac(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(64)
    opad = bytearray(64)
    for i in range(64):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    h = hashlib.sha256(ipad)
    h.update(msg)
    o = hashlib.sha256(opad)
    o.update(h.digest())
    return o.digest()


def hkdf_sha256(salt, ikm, info, length=32):
    """RFC 5869 with SHA-256: PRK = HMAC(salt, IKM); T(i) = HMAC(PRK, T(i-1) || info || i)."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF length %r outside 1..8160" % (length,))
    prk = _hmac(salt if salt else bytes(32), ikm)
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = _hmac(prk, t + info + bytes((i,)))
        out += t
        i += 1
    return out[:length]


def session_salt(host_nonce, device_nonce):
    if len(host_nonce) != NONCE_LEN or len(device_nonce) != NONCE_LEN:
        raise ValueError("handshake nonces are %d bytes" % NONCE_LEN)
    return bytes(host_nonce) + bytes(device_nonce)


def session_info(device_id, boot_id):
    return INFO_LABEL + struct.pack("<HH", device_id, boot_id)


def session_key(key, host_nonce, device_nonce, device_id, boot_id):
    """The per-session key: HKDF-SHA256(IKM = device key, salt = host nonce || device nonce,
    info = label || device_id || boot_id), 32 bytes."""
    return hkdf_sha256(session_salt(host_nonce, device_nonce), bytes(key),
                       session_info(device_id, boot_id))
