"""What several commands share: the data folder (--data, the config's data_dir, or
./var/becomingone), --set overrides, the config they make, and the --http / --no-http flags."""
import os

import yaml

from becomingone.config import load_config, read_yaml
from becomingone.errors import UserError

__all__ = ["DEFAULT_DATA", "resolve_data_dir", "data_config", "parse_sets", "load",
           "add_http_arguments", "http_arg", "print_warnings"]

DEFAULT_DATA = os.path.join(".", "var", "becomingone")


def add_http_arguments(p):
    """--http HOST:PORT / --no-http (docs/HTTP.md); `run` and `emulate` share them."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--http", metavar="HOST:PORT", default=None,
                   help="serve the HTTP API, dashboard and /metrics here (default: http.host and "
                        "http.port, 127.0.0.1:8000; :0 picks a free port; any non-loopback address "
                        "needs a token: http.token, http.token_file or BECOMINGONE_HTTP_TOKEN)")
    g.add_argument("--no-http", action="store_true", help="no HTTP server")


def http_arg(args):
    """The Coordinator's `http` argument from --http / --no-http."""
    if getattr(args, "no_http", False):
        return False
    return getattr(args, "http", None)


def resolve_data_dir(data, config_path):
    if data:
        return os.path.abspath(os.path.expanduser(data))
    if config_path:
        raw = read_yaml(config_path)
        if isinstance(raw, dict) and raw.get("data_dir"):
            return os.path.abspath(os.path.expanduser(raw["data_dir"]))
    return os.path.abspath(DEFAULT_DATA)


def data_config(args):
    """The Config of a command that reads a coordinator's data folder (--config, --data): the
    folder resolved as `becomingone run` resolves it."""
    return load_config(args.config, {"data_dir": resolve_data_dir(args.data, args.config)})


def parse_sets(items):
    out = {}
    for it in items or ():
        if "=" not in it:
            raise UserError("--set needs KEY=VALUE (got %r)" % it)
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise UserError("--set %s: value %r is not valid YAML" % (k, v)) from None
    return out


def print_warnings(cfg, stream=None):
    """The configuration's warnings (Config.warnings: e.g. a KAIROS window that can never
    collapse at kairos.omega), one `becomingone: warning: ...` line each on stderr."""
    import sys
    for w in cfg.warnings:
        print("becomingone: warning: %s" % w, file=stream or sys.stderr)


def load(args):
    """The Config of a command with --config, --data and --set."""
    over = parse_sets(getattr(args, "set", None))
    over["data_dir"] = resolve_data_dir(args.data, args.config)
    return load_config(args.config, over)
