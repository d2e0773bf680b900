"""Export a ledger for outside verification (docs/LEDGER.md §7).

FOLDER/entries.jsonl   one entry per line, canonical JSON of
                       {"data","hash","index","previous_hash","timestamp"}, index order
FOLDER/checkpoint.txt  the latest signed checkpoint note (signed first if there is none
                       covering the exported size)
FOLDER/public_key.pem  the Ed25519 public key (SubjectPublicKeyInfo PEM)
FOLDER/manifest.json   {"format": "becomingone-ledger-export/1", "origin", "size", "root" (hex),
                       "checkpoint_size", "public_key_raw_b64"}
"""
import base64
import json
import os

from becomingone.errors import UserError
from becomingone.ledger import checkpoint as ckpt
from becomingone.util.atomic import atomic_write

FORMAT = "becomingone-ledger-export/1"


def export_ledger(ledger, folder):
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError("export target %s exists and is not a folder" % folder)
    os.makedirs(folder, exist_ok=True)
    for name in ("entries.jsonl", "checkpoint.txt", "public_key.pem", "manifest.json"):
        if os.path.exists(os.path.join(folder, name)):
            raise UserError("export folder %s already holds %s; choose an empty folder" % (folder, name))
    with ledger.locked():  # a consistent cut: the writer waits while we export
        note = ledger.latest_checkpoint()
        if note is None or ckpt.parse_note(note)["size"] != ledger.size:
            note = ledger.checkpoint()
        size = ckpt.parse_note(note)["size"]
        with atomic_write(os.path.join(folder, "entries.jsonl"), encoding="ascii",
                          newline="\n") as f:
            for e in ledger.entries(0, size):
                f.write(e.to_json())
                f.write("\n")
        root = ledger.root(size)
    with open(os.path.join(folder, "checkpoint.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(note)
    pem = ledger.public_key_pem()
    with open(os.path.join(folder, "public_key.pem"), "w", encoding="ascii") as f:
        f.write(pem)
    pub = ckpt.load_public_key(pem.encode("ascii"))
    manifest = {"format": FORMAT, "origin": ledger.origin, "size": size, "root": root.hex(),
                "checkpoint_size": size,
                "public_key_raw_b64": base64.b64encode(ckpt.raw_public(pub)).decode("ascii")}
    with open(os.path.join(folder, "manifest.json"), "w", encoding="ascii") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return manifest
