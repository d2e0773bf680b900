"""Whether and where the HTTP server listens, and with which token (docs/HTTP.md).

    settings = resolve_settings(cfg, override=None)   # None when the server is switched off

Where the settings come from, first match wins:
  1. `override`: False = off; "HOST:PORT" = on at that address (`--no-http`, `--http HOST:PORT`)
  2. the environment variable BECOMINGONE_HTTP: "off" (also 0/false/no) = off,
     "HOST:PORT" = on at that address (the test suite sets "off": tests/conftest.py)
  3. the config: http.enabled, http.host, http.port
The token: BECOMINGONE_HTTP_TOKEN, else http.token_file, else http.token. A server bound to
anything but a loopback address refuses to start without one (UserError naming the fix).
"""
import ipaddress
import os
import stat

from becomingone.errors import UserError

__all__ = ["HttpSettings", "resolve_settings", "parse_address", "is_loopback", "ENV_HTTP",
           "ENV_TOKEN", "MIN_TOKEN"]

ENV_HTTP = "BECOMINGONE_HTTP"
ENV_TOKEN = "BECOMINGONE_HTTP_TOKEN"
MIN_TOKEN = 16
OFF = ("off", "0", "false", "no", "none")


class HttpSettings:
    """Where the HTTP server listens, its token (None on loopback without one) and the SSE
    interval."""
    __slots__ = ("host", "port", "token", "sse_interval")

    def __init__(self, host, port, token=None, sse_interval=0.5):
        self.host, self.port, self.token, self.sse_interval = host, int(port), token, float(sse_interval)

    def __repr__(self):
        return "HttpSettings(%s:%d, token=%s)" % (self.host, self.port, "set" if self.token else "none")


def parse_address(text, what="--http"):
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port); PORT 0 picks a free port."""
    s = str(text).strip()
    host, sep, port = s.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError("%s needs HOST:PORT with PORT in 0..65535 (e.g. 127.0.0.1:8000, or "
                        "127.0.0.1:0 for a free port), got %r" % (what, text))
    return host, int(port)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False          # a host name: it may resolve to any interface


def _read_token_file(path):
    path = os.path.expanduser(path)
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise UserError("http.token_file %s cannot be read: %s" % (path, e.strerror or e)) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError("http.token_file %s has mode %o: other users may read it (allowed: 0600 "
                        "or stricter; chmod 600 %s)" % (path, stat.S_IMODE(st.st_mode), path))
    return token


def resolve_settings(cfg, override=None, environ=None):
    """HttpSettings, or None when the server is off (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    h = cfg.http
    if override is False:
        return None
    if override is not None:
        host, port = parse_address(override)
    else:
        v = env.get(ENV_HTTP, "").strip()
        if v.lower() in OFF:
            return None
        if v:
            host, port = parse_address(v, what=ENV_HTTP)
        elif not h.enabled:
            return None
        else:
            host, port = h.host, h.port
    token = env.get(ENV_TOKEN) or None
    source = ENV_TOKEN
    if token is None and h.token_file:
        token, source = _read_token_file(h.token_file), "http.token_file"
    if token is None and h.token:
        token, source = h.token, "http.token"
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN:
            raise UserError("the HTTP token from %s has %d characters; it needs at least %d "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
                            % (source, len(token), MIN_TOKEN))
    if token is None and not is_loopback(host):
        raise UserError(
            "the HTTP API would listen on %s:%d, which other machines can reach, without a token: "
            "set one (%s, http.token_file or http.token; at least %d characters), or bind a "
            "loopback address (--http 127.0.0.1:%d), or switch the server off (--no-http)"
            % (host, port, ENV_TOKEN, MIN_TOKEN, port))
    return HttpSettings(host, port, token, h.sse_interval)
