"""The bottom layer, used by every other: atomic file writes, the coordinator's counters, the
worker supervisor, progress bars, times."""
