"""Trust between cells: a folder of `<cell>.json` files {"cell", "origin", "public_key_pem"},
one per cell: its ledger origin and the Ed25519 key that signs its checkpoints and T_global
entries (docs/MESH.md). Every file is written whole or not at all."""
import json
import os

from becomingone.ledger import checkpoint as ckpt
from becomingone.util.atomic import write_json

__all__ = ["write_trust", "write_trust_entry", "load_trust"]


def write_trust_entry(folder, cell, origin, public_key_pem):
    """Write (or replace) one cell's trust file."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, cell + ".json"),
               {"cell": cell, "origin": origin, "public_key_pem": public_key_pem})


def write_trust(folder, cell, ledger):
    """This cell's own trust file, from its ledger."""
    write_trust_entry(folder, cell, ledger.origin, ledger.public_key_pem())


def load_trust(folder):
    """{cell: (origin, Ed25519 public key)} of every trust file in `folder`."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                t = json.load(f)
            out[t["cell"]] = (t["origin"], ckpt.load_public_key(t["public_key_pem"].encode("ascii")))
    return out
