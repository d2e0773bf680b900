"""Regenerate the key tables of docs/CONFIG.md from becomingone.config.SCHEMA (everything after the
'## Every key' heading is replaced).  Run: python tools/gen_config_doc.py"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tools.checkout import use_checkout  # noqa: E402

use_checkout()
from becomingone.config import iter_leaves  # noqa: E402

HEAD = "## Every key"


def tables():
    out, sec = [], None
    for path, leaf in iter_leaves():
        top = path.split(".")[0]
        if top != sec:
            sec = top
            out.append("\n### `%s`\n\n| key | default | allowed | meaning |\n|---|---|---|---|" % top)
        d = leaf.default
        ds = "null" if d is None else repr(d) if isinstance(d, float) else json.dumps(d)
        if path == "pulse.U":
            ds = "e^4 (54.598...)"
        out.append("| `%s` | %s | %s | %s |" % (path, ds, leaf.allowed().replace("|", "/"), leaf.help))
    return "\n".join(out) + "\n"


def main():
    p = os.path.join(ROOT, "docs", "CONFIG.md")
    text = open(p, encoding="utf-8").read()
    head = text.split(HEAD)[0]
    with open(p, "w", encoding="utf-8") as f:
        f.write(head + HEAD + "\n" + tables())


if __name__ == "__main__":
    main()
