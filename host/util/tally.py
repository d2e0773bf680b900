"""The coordinator's counters, shared by the parts of its processing thread."""
import collections

__all__ = ["Tally"]


class Tally:
    """`counts`: named events of every part (frames_received, frames_accepted, beats,
    witness_committed, frames_sent, ...: status()["counters"]); `rejected`: frames refused, by
    reason (status()["frames_rejected"]); `overload`: frames a link reader dropped because the
    processing thread was behind (written by the readers only)."""

    __slots__ = ("counts", "rejected", "overload")

    def __init__(self):
        self.counts = collections.Counter()
        self.rejected = collections.Counter()
        self.overload = 0

    def reject(self, reason, n=1):
        """n frames refused for `reason`."""
        self.rejected[reason] += n
        self.counts["frames_rejected"] += n
