"""What reaches the processing thread: the coordinator's inbox carries these messages, each
handled by Coordinator.handle in arrival order."""
from typing import Any, NamedTuple

__all__ = ["Received", "Committed", "Call"]


class Received(NamedTuple):
    """A link's reader got frames (a links/batch.py FrameBatch) at received_us (monotonic µs)."""
    link: Any
    batch: Any
    received_us: int


class Committed(NamedTuple):
    """The ledger's answer for a WITNESS record: its Entry, or the error (writer thread)."""
    key: tuple
    entry: Any
    error: Any


class Call(NamedTuple):
    """fn(*args) to run in the processing thread; its result or exception goes to `future`."""
    fn: Any
    args: tuple
    future: Any
