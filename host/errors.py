"""The host's exception tree: one base per layer, so a caller catches what a layer raises on
purpose and nothing else. Every class here carries a message that says what was wrong and what
is allowed; the CLI prints it as `becomingone: <message>` (no traceback) and exits with the
status its layer maps to (becomingone/cli.py EXIT_CODES; docs/HOST.md: 2 for all of them).

    BecomingOneError            anything the host raises on purpose
    +-- UserError               bad input from a user: a flag, a file, a value
    |   +-- ConfigError         becomingone.yaml or a --set key (config/)
    +-- LinkError               a link to devices (links/)
    |   +-- LinkClosed          the link is closed, or its port is gone (reopened later)
    |   +-- LinkTimeout         a write did not complete in time
    +-- LedgerError             the ledger (ledger/): LedgerCorrupt, LedgerLocked, KindError, ...
    +-- MemoryStoreError        the memory database (memory/)
    +-- MeshError               the mesh between cells (mesh/): TLS, replicas, archives, NATS
    +-- RelayError              a relay node's uplink to its coordinator (relay/)
    +-- NotRunning              the coordinator's processing loop does not run (coordinator/)

WireError is the wire layer's base, defined with the decoder in shared/wire_errors.py (the
device runs the same code); the host's decoder counts it per reason and never lets it out.
"""
from shared.wire_errors import ProtocolError as WireError

__all__ = ["BecomingOneError", "UserError", "ConfigError", "LinkError", "LinkClosed",
           "LinkTimeout", "WireError", "LedgerError", "MemoryStoreError", "MeshError", "RelayError", "NotRunning"]


class BecomingOneError(Exception):
    """Base of every error the host raises on purpose."""


class UserError(BecomingOneError):
    """Bad input from a user (flag, file, config key, device id): the message says what is
    allowed."""


class ConfigError(UserError):
    """A config file or key is invalid; the message names the key path."""


class LinkError(BecomingOneError):
    """A link to devices failed (open, read or write); the message names the link's URL."""


class LinkClosed(LinkError):
    """The link is closed (close() was called) or its port is currently gone; a wanted link
    reopens itself with backoff."""


class LinkTimeout(LinkError):
    """A write to the link did not complete within its timeout."""


class LedgerError(BecomingOneError):
    """The ledger cannot do what was asked (bad entry, damaged or locked file, newer format)."""


class MemoryStoreError(BecomingOneError):
    """The memory database cannot be opened or read (missing, locked, corrupt)."""


class MeshError(BecomingOneError):
    """The mesh between cells: missing TLS material, a refused peer, a forked replica, an
    archive that cannot be restored, a NATS cluster that cannot be used."""


class RelayError(BecomingOneError):
    """A relay node (relay/) cannot reach or use its coordinator uplink (bad target, a socket
    that cannot be opened); the message names the uplink."""


class NotRunning(BecomingOneError):
    """The coordinator's processing loop does not run (a call that needs it was refused)."""
