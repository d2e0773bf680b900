"""Files written whole or not at all: every state file of the host (status.json, sessions.json,
devconfig.json, the keystore, replicas, trust files, exports, summaries) goes through here.

    with atomic_write(path) as f:        # a temporary file beside `path`, opened for writing
        f.write(...)                     # on a clean exit it replaces `path` (os.replace): a
                                         # reader sees the old file or the new one, never half;
                                         # on an error it is removed and `path` is untouched
    write_json(path, data, sort_keys=True)
    write_private(path, data)            # a new secret file: 0600, never overwrites, fsynced

mode: the new file's permissions, applied like open() does (the umask still narrows them);
0o600 for anything secret or private. fsync: the data reaches the disk before the rename, so the
file survives a power loss too (keys, the keystore).
"""
import contextlib
import itertools
import json
import os

__all__ = ["atomic_write", "write_json", "write_private"]

_serial = itertools.count()


@contextlib.contextmanager
def atomic_write(path, binary=False, mode=0o666, fsync=False, encoding="utf-8", newline=None):
    """A file object for the new content of `path`; see the module docstring."""
    tmp = "%s.tmp%d.%d" % (path, os.getpid(), next(_serial))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        text = {} if binary else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, "wb" if binary else "w", **text) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, data, mode=0o666, fsync=False, **dump_options):
    """`data` as JSON (json.dumps with dump_options), atomically. One string, one write: json.dump
    to a file encodes in Python, chunk by chunk (a coordinator's status file with 500 devices
    took 0.17 s that way, about 10x json.dumps)."""
    text = json.dumps(data, **dump_options)
    with atomic_write(path, mode=mode, fsync=fsync) as f:
        f.write(text)


def write_private(path, data):
    """Create `path` with mode 0600 (never readable by others, even for a moment) holding
    `data` (bytes), flushed to disk; refuses to overwrite an existing file (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
