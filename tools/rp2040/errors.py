"""The error the RP2040 tools raise for anything the user can fix (a missing Node, a bad firmware
file, a bad option): the host CLI's UserError, so `becomingone ...` prints it as one line."""
try:
    from becomingone.errors import UserError
except ImportError:                       # the host package under its later name
    try:
        from becomingone.errors import UserError
    except ImportError:
        class UserError(Exception):
            pass

__all__ = ["UserError"]
