"""Exception tree of the host. A UserError is a user mistake: the CLI prints
`becomingone: <message>` and exits non-zero, with no traceback."""


class BecomingOneError(Exception):
    """Base of every error the host raises on purpose."""


class UserError(BecomingOneError):
    """Bad input from a user (flag, file, config key): message says what is allowed."""

    exit_code = 2


class ConfigError(UserError):
    """A config file or key is invalid."""
