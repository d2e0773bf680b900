"""docs/PROTOCOL.md stays byte-exact: its tables are parsed and compared with the layouts of
shared/protocol.py (offsets, types, names, sizes)."""
import os
import re
import struct

from shared import protocol as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i16": "h", "i32": "i", "f32": "f"}
ROW = re.compile(r"^\| (\d+) \| (u8|u16|u32|u64|i16|i32|f32|(?:char|bytes)\[(\d+)\]) \| (\w+) \|")
SECTION = re.compile(r"^### (?:1\.1 Header|2\.\d+ (\w+) \((\d+)\))")


def _tables():
    tables = {}
    current = None
    with open(os.path.join(ROOT, "docs", "PROTOCOL.md"), encoding="utf-8") as f:
        for line in f:
            m = SECTION.match(line)
            if m:
                current = "HEADER" if m.group(1) is None else int(m.group(2))
                tables[current] = []
                continue
            if line.startswith("#"):
                current = None
                continue
            m = ROW.match(line)
            if m and current is not None:
                off, typ, n, name = int(m.group(1)), m.group(2), m.group(3), m.group(4)
                code = "%ss" % n if n else CODES[typ]
                tables[current].append((off, code, name))
    return tables


def _check(rows, fmt, names):
    assert [r[2] for r in rows] == list(names)
    off = 0
    for (doc_off, code, name), want in zip(rows, _codes(fmt)):
        assert doc_off == off, (name, doc_off, off)
        assert code == want, (name, code, want)
        off += struct.calcsize("<" + code)
    assert off == struct.calcsize(fmt)


def _codes(fmt):
    return re.findall(r"\d*[a-zA-Z]", fmt[1:])


def test_header_table_matches_code():
    t = _tables()
    _check(t["HEADER"], P.HEADER_FMT,
           ("ver_flags", "type", "device_id", "boot_id", "seq", "time_era", "time_off"))


def test_every_payload_table_matches_code():
    t = _tables()
    assert set(k for k in t if k != "HEADER") == set(P.TYPE_NAMES)
    for mt, (fmt, names) in P.LAYOUTS.items():
        _check(t[mt], fmt, names)
    # CONFIG: head + first pair documented with their offsets
    cfg = t[P.CONFIG]
    assert [(r[1], r[2]) for r in cfg[:2]] == [("I", "config_version"), ("B", "count")]


def test_size_table_matches_code():
    text = open(os.path.join(ROOT, "docs", "PROTOCOL.md"), encoding="utf-8").read()
    for mt, name in P.TYPE_NAMES.items():
        if mt in (P.CONFIG, P.TELEMETRY):
            continue
        row = re.search(r"^\| %d \| %s \| \w+ \| (\d+) \| (\d+) \|$" % (mt, name), text, re.M)
        assert row, name
        assert int(row.group(1)) == P.payload_size(mt)
        assert int(row.group(2)) == P.frame_size(mt)
