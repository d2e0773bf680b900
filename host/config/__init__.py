"""becomingone.yaml, the host's configuration (docs/CONFIG.md): load.py reads, merges and
validates a file and overrides into a read-only Config; schema.py is the key tree (each leaf's
type, default, limits and help) that validation and docs/CONFIG.md's tables come from."""
from becomingone.config.load import (Config, configure_logging, default_config, iter_leaves,
                                     load_config, read_yaml)
from becomingone.config.schema import SCHEMA

__all__ = ["Config", "SCHEMA", "configure_logging", "default_config", "iter_leaves", "load_config",
           "read_yaml"]
