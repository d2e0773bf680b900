"""Recordings into the firmware and its decisions scored (`becomingone replay|evaluate|scenarios`)."""
