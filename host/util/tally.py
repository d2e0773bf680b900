"""The coordinator's counters, shared by the parts of its processing thread."""
import collections

__all__ = ["Tally"]


class Tally:
    """`counts`: named events of every part (frames_received, frames_accepted, beats,
    witness_committed, frames_sent, ...: status()["counters"]); `rejected`: frames refused, by
    reason, in the processing thread; `overload`: frames a link reader dropped because the
    processing thread was behind (written by the readers only); `screened`: per link, what its
    reader dropped before decode (junk by reason, "shed" frames of over-budget senders),
    each Counter written by its reader only. all_rejected(links) is status()["frames_rejected"]:
    all of them plus the links' own drops (cobs, oversize)."""

    __slots__ = ("counts", "rejected", "overload", "screened")

    def __init__(self):
        self.counts = collections.Counter()
        self.rejected = collections.Counter()
        self.overload = 0
        self.screened = {}

    def screen_counter(self, link):
        """The Counter of what `link`'s reader drops before decode."""
        return self.screened.setdefault(id(link), collections.Counter())

    def all_rejected(self, links=()):
        """Every frame refused, by reason: the processing thread's, the readers' (screened,
        overload) and the links' framing drops (cobs, oversize)."""
        out = collections.Counter(self.rejected)
        for c in list(self.screened.values()):
            out.update(dict(c))
        if self.overload:
            out["overload"] += self.overload
        for link in links:
            lc = getattr(link, "counters", {})
            for k in ("cobs", "oversize"):
                if lc.get(k):
                    out[k] += lc[k]
        return dict(out)

    def reject(self, reason, n=1):
        """n frames refused for `reason`."""
        self.rejected[reason] += n
        self.counts["frames_rejected"] += n
