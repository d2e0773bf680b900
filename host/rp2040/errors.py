"""The error the RP2040 tools raise for anything the user can fix (a missing Node, a bad firmware
file, a bad option): the host CLI's UserError, so `becomingone ...` prints it as one line."""
from becomingone.errors import UserError

__all__ = ["UserError"]
