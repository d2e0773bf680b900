# COBS framing for byte streams (serial, USB CDC, stdin/stdout of the unix port).
#
# On the wire a frame is  0x00 | COBS(frame) | 0x00 . The leading delimiter means stray bytes
# written before a frame (a REPL banner, mpremote's "\r\x02", line noise) end up in a segment of
# their own and are dropped, instead of corrupting the next frame. Empty segments (two delimiters
# in a row) are ignored. Frames are at most MAX_FRAME = 254 bytes, so COBS adds exactly one code
# byte: a framed frame is always len(frame) + 3 bytes, and the device can keep one framed buffer
# of fixed size per frame kind.
#
# encode_into(src, n, dst, off=0) -> bytes written (delimiters included); allocates nothing.
# encode(data) -> bytes (convenience, allocates).
# decode(segment) -> bytes, raises FramingError.
# Deframer(max_frame): feed(data) -> list of decoded frames; counts dropped segments in
#   .errors {"cobs": n, "oversize": n, "resync": n}; never raises on any input. reset(hunt=True)
#   when the stream starts mid-frame (a port opened): the first segment is dropped as "resync".
import sys

from shared.wire_errors import FramingError, OversizeError

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_FRAME = const(254)


def encoded_size(n):
    """Bytes on the wire for an n-byte frame, both delimiters included."""
    return n + n // 254 + 3


def encode_into(src, n, dst, off=0):
    """COBS-encode src[0:n] into dst at off, with a leading and a trailing 0x00.
    Returns the number of bytes written. dst must have encoded_size(n) bytes free."""
    dst[off] = 0
    code_pos = off + 1
    w = off + 2
    code = 1
    i = 0
    while i < n:
        b = src[i]
        if b == 0:
            dst[code_pos] = code
            code_pos = w
            w += 1
            code = 1
        else:
            dst[w] = b
            w += 1
            code += 1
            if code == 0xFF:
                dst[code_pos] = code
                code_pos = w
                w += 1
                code = 1
        i += 1
    dst[code_pos] = code
    dst[w] = 0
    return w + 1 - off


if sys.implementation.name == "micropython":
    import micropython

    _encode_into_py = encode_into

    @micropython.viper
    def _cobs_viper(src, n: int, dst, off: int) -> int:
        s = ptr8(src)
        d = ptr8(dst)
        d[off] = 0
        code_pos = off + 1
        w = off + 2
        code = 1
        i = 0
        while i < n:
            b = s[i]
            if b == 0:
                d[code_pos] = code
                code_pos = w
                w += 1
                code = 1
            else:
                d[w] = b
                w += 1
                code += 1
                if code == 0xFF:
                    d[code_pos] = code
                    code_pos = w
                    w += 1
                    code = 1
            i += 1
        d[code_pos] = code
        d[w] = 0
        return w + 1 - off

    def encode_into(src, n, dst, off=0):  # noqa: F811 - same contract, machine-code speed
        if len(dst) < off + encoded_size(n) or len(src) < n:
            return _encode_into_py(src, n, dst, off)  # raises IndexError like the Python one
        return _cobs_viper(src, n, dst, off)


def encode(data):
    n = len(data)
    out = bytearray(encoded_size(n))
    m = encode_into(data, n, out)
    return bytes(out[:m])


def decode(seg):
    """Decode one COBS segment (no delimiters). Raises FramingError on a bad segment."""
    if not isinstance(seg, bytes):
        seg = bytes(seg)
    n = len(seg)
    out = bytearray()
    i = 0
    while i < n:
        code = seg[i]
        if code == 0:
            raise FramingError("COBS segment contains 0x00 at offset %d (0x00 only delimits)" % i)
        end = i + code
        if end > n:
            raise FramingError("COBS code %d at offset %d runs past the segment end (%d bytes)"
                               % (code, i, n))
        block = seg[i + 1:end]
        if b"\x00" in block:
            raise FramingError("COBS segment contains 0x00 after offset %d" % i)
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


class Deframer:
    """Streaming receiver: bytes in, whole frames out; resynchronises on every 0x00."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self._cap = encoded_size(max_frame)  # longest legal segment, delimiters included
        self._buf = bytearray(self._cap)
        self._n = 0
        self._overflow = False
        self._hunt = False
        self.errors = {"cobs": 0, "oversize": 0, "resync": 0}

    def reset(self, hunt=False):
        """Forget a partial segment. hunt: the stream starts at an unknown point (a port just
        opened: the OS discards what was buffered, maybe half a frame): the bytes before the
        next delimiter are the tail of an earlier frame, dropped and counted as "resync", not
        as a framing error (a whole frame starts with its own delimiter, so none is lost)."""
        self._n = 0
        self._overflow = False
        self._hunt = hunt

    def feed(self, data):
        """Consume bytes; return the list of frames (bytes) completed by them."""
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        frames = []
        buf = self._buf
        cap = self._cap - 2  # longest legal segment without its delimiters
        n = len(data)
        i = 0
        while i < n:
            j = data.find(b"\x00", i)
            end = n if j < 0 else j
            k = end - i  # bytes of this piece before the delimiter (or the chunk end)
            if k and not self._overflow:
                if self._n + k > cap:
                    self._overflow = True
                else:
                    buf[self._n:self._n + k] = data[i:end]
                    self._n += k
            if j < 0:
                break
            # a delimiter: close the segment
            if self._hunt:
                self._hunt = False
                if self._n or self._overflow:
                    self.errors["resync"] += 1
            elif self._overflow:
                self.errors["oversize"] += 1
            elif self._n:
                try:
                    frames.append(decode(memoryview(buf)[:self._n]))
                except FramingError:
                    self.errors["cobs"] += 1
            self._n = 0
            self._overflow = False
            i = j + 1
        return frames


def check_size(n, max_frame=MAX_FRAME):
    if n > max_frame:
        raise OversizeError("frame is %d bytes, at most %d allowed" % (n, max_frame))
