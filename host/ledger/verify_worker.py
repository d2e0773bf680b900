"""Worker process of a parallel `ledger verify`: checks one chunk-aligned range of entries.

    python -m becomingone.ledger.verify_worker PATH A B DEEP BUSY_TIMEOUT NODE_LEVEL [PROGRESS]  < needed-coords JSON
prints one JSON object (hashes hex) on stdout; see becomingone.ledger.verify._scan. PROGRESS "1": a line
"P END" (entries [A, END) checked) after each chunk, before the JSON."""
import json
import sys

from becomingone.ledger.verify import _scan_path


def main():
    path, a, b, deep, busy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5])
    node_level = int(sys.argv[6])
    progress = None
    if len(sys.argv) > 7 and sys.argv[7] == "1":
        def progress(end):
            sys.stdout.write("P %d\n" % end)
            sys.stdout.flush()
    need = {tuple(c) for c in json.load(sys.stdin)}
    try:
        out = _scan_path(path, a, b, deep, need, busy, node_level, progress)
    except Exception as e:  # reported by the parent as a LedgerError naming the file
        json.dump({"error": str(e)}, sys.stdout)
        return 0
    json.dump({"bad": out["bad"], "nodes": out["nodes"], "end": out["end"],
               "genesis": out["genesis"].hex() if out["genesis"] else None,
               "got": [[lv, k, h.hex()] for (lv, k), h in out["got"].items()],
               "roots": [h.hex() for h in out["roots"]],
               "tail": [[lv, h.hex()] for lv, h in out["tail"]]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
