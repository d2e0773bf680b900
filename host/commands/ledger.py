"""`becomingone ledger verify|show|export|proof|checkpoint`.

The ledger file is --db PATH, else the ledger of the data folder `run` uses: --data DIR, else
the config file's data_dir, else ./var/becomingone (a config's ledger.path wins over
DATA/ledger.sqlite). The signing key lives outside the data folder (ledger.key_dir;
docs/LEDGER.md §6); `verify` counts the cosignatures of the witnesses the config trusts
(ledger.witnesses, the mesh's trust folder) and checks `--against` a saved checkpoint."""
import json
import os
import sys

from becomingone.commands.common import data_config
from becomingone.errors import UserError
from becomingone.ledger import Ledger, checkpoint as ckpt, merkle, verify_path
from becomingone.util.progress import progress_bar, wants_progress
from becomingone.util.times import fmt_time


def _common(p):
    p.add_argument("--db", metavar="PATH", help="ledger database file")
    p.add_argument("--data", metavar="DIR", help="data folder (ledger file DIR/ledger.sqlite)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml to take the ledger path from")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("verify", help="check chain, stored Merkle tree and checkpoint signatures")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--deep", action="store_true", help="also re-parse every entry's data and check it is canonical JSON")
    p.add_argument("--workers", type=int, default=None, help="verify processes (default: up to 4 on large ledgers)")
    p.add_argument("--against", metavar="CHECKPOINT",
                   help="a saved checkpoint note (e.g. `becomingone witness show --origin O`): the "
                        "ledger must extend it, or it was rolled back or rewritten")
    p = sub.add_parser("show", help="list entries")
    _common(p)
    p.add_argument("--from", dest="start", type=int, default=None, metavar="I", help="first index (default: last 20)")
    p.add_argument("--to", dest="stop", type=int, default=None, metavar="J", help="last index, inclusive")
    p.add_argument("--kind", default=None, help="only entries of this kind")
    p.add_argument("--json", action="store_true", help="JSON Lines: one entry per line")
    p = sub.add_parser("export", help="write entries, checkpoint and public key for outside verification")
    _common(p)
    p.add_argument("out", help="folder to write (must not already hold an export)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p = sub.add_parser("proof", help="inclusion proof of an entry or consistency proof between sizes")
    _common(p)
    p.add_argument("index", type=int, nargs="?", help="entry index for an inclusion proof")
    p.add_argument("--size", type=int, default=None, help="tree size of the inclusion proof (default: current)")
    p.add_argument("--consistency", type=int, nargs="+", metavar="SIZE",
                   help="OLD [NEW]: consistency proof from tree size OLD to NEW (default: current)")
    p.add_argument("--json", action="store_true", help="print the proof as JSON")
    p = sub.add_parser("checkpoint", help="sign a checkpoint of the current tree (or --show the latest)")
    _common(p)
    p.add_argument("--show", action="store_true", help="show the latest checkpoint, do not sign a new one")
    p.add_argument("--json", action="store_true", help="print as JSON")


def ledger_path(args):
    return args.db or data_config(args).ledger_path()


def _open(args):
    path = ledger_path(args)
    if not os.path.exists(path):
        raise UserError("no ledger at %s (pass --db PATH or --data DIR; the coordinator creates it)" % path)
    return Ledger(path, key_dir=data_config(args).ledger.key_dir)


def trusted_witnesses(cfg):
    """{name: Ed25519PublicKey} of the witnesses a config trusts: ledger.witnesses, and the
    cells of its mesh trust folder (each cell witnesses its peers: host/mesh/cosign.py)."""
    from becomingone.ledger.cosignature import CosignatureError, public_key_of
    out = {}
    for i, w in enumerate(cfg.ledger.witnesses):
        try:
            name, pub = public_key_of(w.public_key, w.name)
        except CosignatureError as e:
            raise UserError("config key ledger.witnesses[%d].public_key: %s" % (i, e)) from None
        out[name] = pub
    tdir = cfg.sync.mesh.trust_dir or cfg.data_path("mesh", "trust")
    if os.path.isdir(tdir):
        from becomingone.mesh.cosign import witness_name
        from becomingone.mesh.trust import load_trust
        try:
            for cell, (_origin, pub) in load_trust(tdir).items():
                out[witness_name(cell)] = pub
        except (OSError, ValueError, KeyError):
            pass
    return out


def _out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")


def run(args):
    return {"verify": _verify, "show": _show, "export": _export, "proof": _proof,
            "checkpoint": _checkpoint}[args.action](args)


def _verify(args):
    path = ledger_path(args)
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be >= 1, got %d" % args.workers)
    cfg = data_config(args)
    against = None
    if args.against:
        try:
            with open(args.against, encoding="utf-8") as f:
                against = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError("--against %s: cannot read it (%s)" % (args.against, e)) from None
    show = wants_progress(args)        # a bar on stderr only on a terminal, never with --json
    with progress_bar("verify", None, enabled=show) as upd:
        res = verify_path(path, deep=args.deep, workers=args.workers,
                          progress=(lambda done, total: upd(done, "entries", total)) if show else None,
                          key_dir=cfg.ledger.key_dir, witnesses=trusted_witnesses(cfg),
                          against=against)
    if args.json:
        _out(res.to_dict())
    else:
        print(res.message(), file=sys.stdout if res.ok else sys.stderr)
    return 0 if res.ok else 1


def _show(args):
    with _open(args) as led:
        stop = led.size if args.stop is None else args.stop + 1
        start = args.start if args.start is not None else max(0, stop - 20)
        if start < 0 or stop > led.size or start > stop:
            raise UserError("range %d..%d out of bounds (entries 0..%d)" % (start, stop - 1, led.size - 1))
        for e in led.entries(start, stop):
            if args.kind and e.kind != args.kind:
                continue
            if args.json:
                sys.stdout.write(e.to_json() + "\n")
            else:
                # times as every other surface prints them: ISO 8601 UTC (--json keeps the
                # entry as stored and hashed)
                print("%8d  %s  %-9s %s  %s" % (e.index, fmt_time(e.timestamp), e.kind, e.hash[:16],
                                                   json.dumps({k: v for k, v in e.data.items() if k != "kind"},
                                                              sort_keys=True)[:100]))
    return 0


def _export(args):
    with _open(args) as led:
        manifest = led.export(args.out)
    if args.json:
        _out(manifest)
    else:
        print("exported %d entries of %s to %s (entries.jsonl, checkpoint.txt, public_key.pem, manifest.json)"
              % (manifest["size"], manifest["origin"], args.out))
    return 0


def _proof(args):
    with _open(args) as led:
        if args.consistency:
            if args.index is not None or len(args.consistency) > 2:
                raise UserError("use either INDEX (inclusion) or --consistency OLD [NEW], not both")
            old = args.consistency[0]
            new = args.consistency[1] if len(args.consistency) == 2 else None
            p = led.consistency_proof(old, new)
            p["verified"] = merkle.verify_consistency(p["old_size"], p["new_size"], bytes.fromhex(p["old_root"]),
                                                      bytes.fromhex(p["new_root"]), [bytes.fromhex(x) for x in p["path"]])
        elif args.index is not None:
            p = led.inclusion_proof(args.index, args.size)
            p["verified"] = merkle.verify_inclusion(p["index"], p["tree_size"], bytes.fromhex(p["leaf_hash"]),
                                                    [bytes.fromhex(x) for x in p["path"]], bytes.fromhex(p["root"]))
        else:
            raise UserError("give an entry INDEX (inclusion proof) or --consistency OLD [NEW]")
    if args.json:
        _out(p)
    else:
        for k, v in p.items():
            if k != "path":
                print("%-11s %s" % (k, v))
        print("path        %d hashes" % len(p["path"]))
        for h in p["path"]:
            print("  " + h)
    return 0 if p["verified"] else 1


def _checkpoint(args):
    with _open(args) as led:
        note = led.latest_checkpoint() if args.show else led.checkpoint()
    if note is None:
        raise UserError("the ledger has no checkpoint yet (run `becomingone ledger checkpoint` to sign one)")
    if args.json:
        n = ckpt.parse_note(note)
        _out({"origin": n["origin"], "size": n["size"], "root": n["root"].hex(),
              "timestamp_ms": n["timestamp_ms"], "note": note})
    else:
        sys.stdout.write(note)
    return 0
