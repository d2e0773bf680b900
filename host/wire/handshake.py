"""Session keys of the handshake (docs/PROTOCOL.md §4.1) on the host.

session_key(key, host_nonce, device_nonce, device_id, boot_id) -> 32 bytes
    HKDF-SHA256 (RFC 5869, the `cryptography` package) with the salt and info that
    shared/hkdf.py defines for both runtimes (the device derives the same key there).
new_nonce() -> 16 random bytes (os.urandom)

DeviceSession: the device's half of the handshake in CPython, for what plays a device on the
host side (emulated flooders, benchmarks, tests; the firmware's is device/session.py):

    ds = DeviceSession(key, device_id, boot_id)
    hello = P.encode(P.HELLO, dict(fields, nonce=ds.nonce), dev, boot, seq, auth=ds.device_auth)
    ... the host answers CHALLENGE ...
    frame = ds.accept_challenge(data)      # checks it with the derived key; ds.auth is now the
                                           # session key (an Auth); raises ProtocolError if not
    ack = P.encode(P.ACK, {"acked_type": P.CHALLENGE, "status": P.ACK_OK, "ref": frame.seq},
                   dev, boot, seq + 1, auth=ds.auth)
"""
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared import protocol as P
from shared.auth import Auth
from shared.hkdf import NONCE_LEN, session_info, session_salt
from shared.wire_errors import AuthError, FieldError

__all__ = ["session_key", "new_nonce", "DeviceSession", "NONCE_LEN"]


def session_key(key, host_nonce, device_nonce, device_id, boot_id):
    """HKDF-SHA256(IKM = device key, salt = host nonce || device nonce,
    info = "becomingone session v3" || device_id u16 LE || boot_id u16 LE), 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=32,
                salt=session_salt(host_nonce, device_nonce),
                info=session_info(device_id, boot_id)).derive(bytes(key))


def new_nonce():
    return os.urandom(NONCE_LEN)


class DeviceSession:
    """One boot of a keyed device as the device sees its handshake: device_auth tags the HELLO
    that asks for a session (the device key), auth is the session key once a CHALLENGE was
    accepted (None before). The key never appears in a repr."""

    def __init__(self, key, device_id, boot_id, nonce=None):
        self._key = bytes(key)
        self.device_id, self.boot_id = device_id, boot_id
        self.nonce = nonce or new_nonce()
        self.device_auth = Auth(self._key)
        self.auth = None

    def __repr__(self):
        return "<DeviceSession dev=%d boot=%d established=%s key=***>" % (
            self.device_id, self.boot_id, self.auth is not None)

    def restart(self):
        """A new handshake (fresh nonce); the current session key stays until it completes."""
        self.nonce = new_nonce()

    def accept_challenge(self, data):
        """A CHALLENGE frame (bytes) answering our HELLO: derive the session key from its nonce,
        check its tag with it; on success `auth` becomes the session key. Returns the Frame."""
        if len(data) < P.HEADER_LEN + NONCE_LEN or data[1] != P.CHALLENGE:
            raise FieldError("not a CHALLENGE frame")
        host_nonce = bytes(data[P.HEADER_LEN:P.HEADER_LEN + NONCE_LEN])
        sk = Auth(session_key(self._key, host_nonce, self.nonce, self.device_id, self.boot_id))
        f = P.decode(bytes(data), auth=sk)
        if f.boot_id != self.boot_id:
            raise AuthError("CHALLENGE for boot %d, this is boot %d" % (f.boot_id, self.boot_id))
        self.auth = sk
        return f
