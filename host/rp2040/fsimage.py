"""littlefs images of the emulated Pico's filesystem: build one from files, read one back.

The layout is MicroPython rp2's on RPI_PICO (littlefs2, 352 blocks of 4096 bytes = 1408 KiB at
flash offset 0xA0000, program size 256 as rp2's _boot.py mounts it), so the firmware mounts the
image as its own. Reading back is how tests see what mpremote wrote onto the board.
Needs littlefs-python (PyPI; in the dev extra).
"""
from becomingone.rp2040.chip import FS_BLOCK, FS_BLOCKS
from becomingone.rp2040.errors import UserError


def _lfs(**kw):
    try:
        from littlefs import LittleFS
    except ImportError:
        raise UserError("the emulated RP2040's filesystem needs littlefs-python: pip install "
                        "littlefs-python (it comes with the dev extra)") from None
    return LittleFS(block_size=FS_BLOCK, block_count=FS_BLOCKS, prog_size=256, read_size=32,
                    lookahead_size=32, **kw)


def build(files):
    """{board path: bytes} -> the image (bytes). Folders are created as needed."""
    fs = _lfs()
    made = set()
    total = 0
    for rel in sorted(files):
        data = files[rel]
        rel = rel.lstrip("/")
        if not rel or rel.endswith("/"):
            raise UserError("bad file name on the board: %r" % (rel,))
        parts = rel.split("/")
        for k in range(1, len(parts)):
            d = "/".join(parts[:k])
            if d not in made:
                try:
                    fs.mkdir(d)
                except FileExistsError:
                    pass
                made.add(d)
        total += len(data)
        try:
            with fs.open(rel, "wb") as f:
                f.write(data)
        except Exception as e:          # littlefs raises its own errors when full
            raise UserError("the files do not fit the Pico's 1408 KiB filesystem (%d bytes so "
                            "far, at %s): %s" % (total, rel, e)) from None
    return bytes(fs.context.buffer)


def read(image):
    """An image (bytes) -> {board path: bytes} of every file in it."""
    from littlefs import UserContext
    ctx = UserContext(FS_BLOCK * FS_BLOCKS)
    ctx.buffer[:len(image)] = image
    fs = _lfs(context=ctx, mount=False)
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            p = (root.rstrip("/") + "/" + n).lstrip("/")
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    return out
