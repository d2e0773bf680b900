"""What one read of a link hands on: the frames that arrived, in arrival order, as a FrameBatch.

Two shapes, both with the same small API (len, items, merge, nbytes, without_oversize):
  FrameList      a list of (frame bytes, reply address): stream links (COBS-deframed) and UDP
                 without recvmmsg
  DatagramBlock  the datagrams of one recvmmsg call as numpy rows (UDP on Linux, IPv4): the
                 ingest cuts TELEMETRY rows out of it as one blob (becomingone/ingest/pipeline.py)
"""
import abc
import socket

import numpy as np

__all__ = ["FrameBatch", "FrameList", "DatagramBlock"]


class FrameBatch(abc.ABC):
    """Frames from one read of a link, in arrival order."""

    __slots__ = ()

    @abc.abstractmethod
    def __len__(self):
        """Number of frames."""

    @abc.abstractmethod
    def items(self, idx=None):
        """[(frame bytes, reply address), ...] for the frames at positions idx (default: all)."""

    @abc.abstractmethod
    def nbytes(self):
        """Bytes of all frames."""

    @abc.abstractmethod
    def without_oversize(self, max_frame):
        """(this batch without frames longer than max_frame, or None when none is left,
        number of frames dropped)."""

    def merge(self, other):
        """A batch of this one's frames then other's, or None when the shape does not merge."""
        return None

    def mergeable(self, other):
        """True when concat([self, other]) can make one batch of both (same shape)."""
        return False

    @classmethod
    def concat(cls, batches):
        """One batch of the frames of `batches` (all mergeable), in order."""
        out = batches[0]
        for b in batches[1:]:
            out = out.merge(b)
        return out

    def without_devices(self, device_ids):
        """(this batch without the frames whose header names a device in `device_ids`, or None
        when none is left, number of frames dropped)."""
        keep = [x for x in self.items() if len(x[0]) < 4 or (x[0][2] | x[0][3] << 8) not in device_ids]
        n = len(self) - len(keep)
        if not n:
            return self, 0
        return (FrameList(keep) if keep else None), n


class FrameList(FrameBatch):
    """Frames as a list of (frame bytes, reply address or None): what stream links and UDP
    without recvmmsg hand on."""
    __slots__ = ("frames",)

    def __init__(self, frames):
        self.frames = frames          # [(frame bytes, reply address or None)]

    def __len__(self):
        return len(self.frames)

    def items(self, idx=None):
        return self.frames if idx is None else [self.frames[i] for i in idx]

    def nbytes(self):
        return sum(len(f) for f, _ in self.frames)

    def without_oversize(self, max_frame):
        keep = [x for x in self.frames if len(x[0]) <= max_frame]
        return (FrameList(keep) if keep else None), len(self.frames) - len(keep)


class DatagramBlock(FrameBatch):
    """Datagrams drained by one recvmmsg call: data (n, width) uint8 rows (row i holds lens[i]
    bytes), names (n, 16) raw sockaddr_in of the senders. Never a view of the receive buffer."""

    __slots__ = ("data", "lens", "names")

    def __init__(self, data, lens, names):
        self.data, self.lens, self.names = data, lens, names

    def __len__(self):
        return len(self.lens)

    def nbytes(self):
        return int(self.lens.sum())

    def without_oversize(self, max_frame):
        big = self.lens > max_frame
        if not big.any():
            return self, 0
        keep = ~big
        if not keep.any():
            return None, len(self.lens)
        return DatagramBlock(self.data[keep], self.lens[keep], self.names[keep]), int(big.sum())

    def without_devices(self, device_ids):
        d = self.data
        if d.shape[1] < 4:
            return self, 0
        dev = d[:, 2].astype(np.int64) | (d[:, 3].astype(np.int64) << 8)
        drop = np.isin(dev, np.fromiter(device_ids, dtype=np.int64, count=len(device_ids)))
        if not drop.any():
            return self, 0
        keep = ~drop
        if not keep.any():
            return None, len(self.lens)
        return DatagramBlock(d[keep], self.lens[keep], self.names[keep]), int(drop.sum())

    def mergeable(self, other):
        return isinstance(other, DatagramBlock)

    @classmethod
    def concat(cls, blocks):
        """One DatagramBlock of `blocks`, in order: one copy of each (rows padded to the
        widest)."""
        if len(blocks) == 1:
            return blocks[0]
        w = max(b.data.shape[1] for b in blocks)
        n = sum(len(b.lens) for b in blocks)
        data = np.zeros((n, w), dtype=np.uint8)
        i = 0
        for b in blocks:
            k, bw = b.data.shape
            data[i:i + k, :bw] = b.data
            i += k
        return cls(data, np.concatenate([b.lens for b in blocks]),
                   np.concatenate([b.names for b in blocks]))

    def merge(self, other):
        if not isinstance(other, DatagramBlock):
            return None
        a, b = self.data, other.data
        w = max(a.shape[1], b.shape[1])
        if a.shape[1] != w:
            a = np.pad(a, ((0, 0), (0, w - a.shape[1])))
        if b.shape[1] != w:
            b = np.pad(b, ((0, 0), (0, w - b.shape[1])))
        return DatagramBlock(np.concatenate((a, b)), np.concatenate((self.lens, other.lens)),
                             np.concatenate((self.names, other.names)))

    @staticmethod
    def addr(name):
        """(host, port) of a raw sockaddr_in row."""
        return socket.inet_ntoa(bytes(name[4:8])), (int(name[2]) << 8) | int(name[3])

    def items(self, idx=None):
        rng = range(len(self.lens)) if idx is None else idx
        d, ln, nm = self.data, self.lens, self.names
        return [(d[i, :ln[i]].tobytes(), self.addr(nm[i])) for i in rng]
