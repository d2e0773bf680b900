"""sendmmsg / recvmmsg for UDP sockets through ctypes (Linux). Python's socket module has
neither; one system call per batch of datagrams is what lets a single Python process offer
(and drain) hundreds of thousands of datagrams per second on loopback.

    MmsgSender(sock, dest, frames).send(start, count) -> datagrams sent
    MmsgReceiver(sock, vlen=1024, slot=2048).recv() -> (numpy uint8 view (n, slot), lengths)
available() tells whether libc has them (Linux glibc/musl); callers fall back otherwise.
"""
import ctypes
import ctypes.util
import socket
import struct

import numpy as np

__all__ = ["available", "MmsgSender", "MmsgReceiver"]

_libc = None
try:
    _name = ctypes.util.find_library("c") or "libc.so.6"
    # ctypes releases the GIL around the call: the kernel's copy of a few thousand datagrams
    # runs beside the processing thread (the coordinator's reader paces its reads, so each
    # read drains about a millisecond of traffic or more: the wait for the GIL after the call
    # is paid once per read, not per datagram)
    _libc = ctypes.CDLL(_name, use_errno=True)
    _libc.sendmmsg
    _libc.recvmmsg
except (OSError, AttributeError):
    _libc = None

MSG_DONTWAIT = 0x40


class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _msghdr), ("msg_len", ctypes.c_uint)]


def available():
    return _libc is not None


def _sockaddr_in(host, port):
    b = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host) + bytes(8)
    return ctypes.create_string_buffer(b, 16)


class MmsgSender:
    """Sends frames[i] (all the same length) from one contiguous buffer to `dest`."""

    def __init__(self, sock, dest, blob, frame_size, batch=256):
        self.fd = sock.fileno()
        self.addr = _sockaddr_in(*dest)
        self.buf = ctypes.create_string_buffer(bytes(blob), len(blob))
        self.size = frame_size
        self.n = len(blob) // frame_size
        self.batch = batch
        self.iov = (_iovec * self.n)()
        self.msgs = (_mmsghdr * self.n)()
        base = ctypes.addressof(self.buf)
        for i in range(self.n):
            self.iov[i].iov_base = base + i * frame_size
            self.iov[i].iov_len = frame_size
            h = self.msgs[i].msg_hdr
            h.msg_name = ctypes.addressof(self.addr)
            h.msg_namelen = 16
            h.msg_iov = ctypes.pointer(self.iov[i])
            h.msg_iovlen = 1
        self.base = ctypes.addressof(self.msgs)
        self.stride = ctypes.sizeof(_mmsghdr)

    def send(self, start, count):
        """Send frames start..start+count-1 (blocking socket); returns how many went."""
        done = 0
        while done < count:
            k = min(self.batch, count - done)
            r = _libc.sendmmsg(self.fd, ctypes.c_void_p(self.base + (start + done) * self.stride), k, 0)
            if r < 0:
                err = ctypes.get_errno()
                if err in (11, 105):      # EAGAIN / ENOBUFS: the receiver is behind
                    continue
                raise OSError(err, "sendmmsg failed")
            done += r
        return done


class MmsgReceiver:
    """Drains up to `vlen` datagrams per call into fixed slots of one numpy buffer."""

    def __init__(self, sock, vlen=1024, slot=2048):
        self.fd = sock.fileno()
        self.vlen = vlen
        self.slot = slot
        self.data = np.zeros((vlen, slot), dtype=np.uint8)
        self.names = np.zeros((vlen, 16), dtype=np.uint8)
        self.iov = (_iovec * vlen)()
        self.msgs = (_mmsghdr * vlen)()
        base = self.data.ctypes.data
        nbase = self.names.ctypes.data
        for i in range(vlen):
            self.iov[i].iov_base = base + i * slot
            self.iov[i].iov_len = slot
            h = self.msgs[i].msg_hdr
            h.msg_name = nbase + 16 * i
            h.msg_iov = ctypes.pointer(self.iov[i])
            h.msg_iovlen = 1
        self.lens = np.ctypeslib.as_array(
            (ctypes.c_uint * (vlen * (ctypes.sizeof(_mmsghdr) // 4))).from_address(
                ctypes.addressof(self.msgs))).reshape(vlen, -1)[:, _mmsghdr.msg_len.offset // 4]
        self._p = ctypes.c_void_p(ctypes.addressof(self.msgs))
        self._used = vlen
        for i in range(vlen):
            self.msgs[i].msg_hdr.msg_namelen = 16
        self._namelen = np.ctypeslib.as_array(
            (ctypes.c_uint32 * (vlen * (ctypes.sizeof(_mmsghdr) // 4))).from_address(
                ctypes.addressof(self.msgs))).reshape(vlen, -1)[:, _msghdr.msg_namelen.offset // 4]

    def recv(self):
        """(rows, lengths, names) of the datagrams waiting now (non-blocking); rows is a view
        into the receiver's buffer, valid until the next call."""
        self._namelen[:self._used] = 16       # the kernel rewrote these in the last call
        r = _libc.recvmmsg(self.fd, self._p, self.vlen, MSG_DONTWAIT, None)
        self._used = max(r, 0)
        if r <= 0:
            return self.data[:0], self.lens[:0], self.names[:0]
        return self.data[:r], self.lens[:r].copy(), self.names[:r]
