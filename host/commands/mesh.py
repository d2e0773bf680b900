"""`becomingone mesh simulate|seal|restore|fetch-shards|init|revoke`: consensus simulations, erasure-coded ledger
archives across cells, the mesh CA, cell certificates (mutual TLS) and their revocation.
docs/MESH.md describes each."""
import json

from becomingone.errors import UserError
from becomingone.mesh.archive import restore, seal_to_cells
from becomingone.mesh.consensus import simulate
from becomingone.mesh.ring import parse_cells
from becomingone.mesh.tls import init_mesh, revoke
from becomingone.util.progress import progress_bar, wants_progress


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("simulate", help="run a consensus simulation and report rounds/messages to 1e-6")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes (>= 2; up to 10,000 is quick)")
    p.add_argument("--algo", required=True, help="emtd, swarm, pushsum or versioned")
    p.add_argument("--graph", default="ws", help="ws (Watts-Strogatz k=4 p=0.1, the seed's) or complete")
    p.add_argument("--seed", type=int, default=0, help="random seed (graph and values)")
    p.add_argument("--max-rounds", type=int, default=2000, help="round cap (default 2000)")
    p.add_argument("--tol", type=float, default=1e-6, help="relative error to reach (default 1e-6)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("seal", help="erasure-code ledger entries [A, B) into k-of-n shards placed on cells")
    p.add_argument("--db", required=True, metavar="LEDGER_DB", help="ledger database to read")
    p.add_argument("--from", dest="start", type=int, default=0, metavar="A", help="first entry (default 0)")
    p.add_argument("--to", dest="stop", type=int, default=None, metavar="B", help="end, exclusive (default: size)")
    p.add_argument("--k", type=int, required=True, help="shards needed to restore")
    p.add_argument("--n", type=int, required=True, help="shards written (k <= n <= 256)")
    p.add_argument("--cells", required=True, help="comma-separated cell names, or name=capacity:load,...")
    p.add_argument("--out", required=True, metavar="DIR", help="folder holding one sub-folder per cell")
    p.add_argument("--json", action="store_true", help="print the placement as JSON")
    p = sub.add_parser("restore", help="rebuild a ledger from any k shards, verified before writing")
    p.add_argument("--from", dest="dirs", nargs="+", required=True, metavar="DIR", help="folders holding shards (searched recursively)")
    p.add_argument("--k", type=int, required=True, help="shards needed (as sealed)")
    p.add_argument("--to", dest="db", required=True, metavar="LEDGER_DB", help="ledger database to create (must not exist)")
    p.add_argument("--pubkey", metavar="PEM", default=None,
                   help="the origin's Ed25519 public key to trust (PEM file); without it the key "
                        "carried by the shards is used and its fingerprint printed: pin it")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("init", help="make a mesh CA and per-cell certificates (mutual TLS)")
    p.add_argument("--dir", default="~/.becomingone/mesh", help="folder for ca.pem, ca.key and cells/CELL.pem|.key (default ~/.becomingone/mesh)")
    p.add_argument("--cells", required=True, help="comma-separated cell names")
    p.add_argument("--days", type=int, default=825, help="certificate lifetime in days")
    p.add_argument("--json", action="store_true", help="print the written files as JSON")

    p = sub.add_parser("fetch-shards", help="fetch an origin's archive shards from the live cells holding them")
    p.add_argument("--origin", required=True, help="the lost cell's name (from --trust) or its ledger origin")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the shards (one sub-folder per holder)")
    p.add_argument("--nats", metavar="URL", help="the mesh's NATS server (sync.backend nats)")
    p.add_argument("--trust", metavar="DIR", help="trust folder: the cells to ask (NATS) and names to origins")
    p.add_argument("--tls", metavar="DIR", help="embedded mesh: the TLS folder of the cell you act as")
    p.add_argument("--cell", help="embedded mesh: the cell you act as (its certificate)")
    p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="embedded mesh: a cell to ask (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("revoke", help="revoke a cell's certificate (adds it to the CA's crl.pem)")
    p.add_argument("--dir", default="~/.becomingone/mesh", help="the CA folder of `mesh init` (default ~/.becomingone/mesh)")
    p.add_argument("--cell", required=True, help="the cell whose certificate is revoked")


def _progress(label, total, args):
    """A rich progress bar on stderr (only on a terminal, not with --json): host/util/progress.py."""
    return progress_bar(label, total, enabled=wants_progress(args))


def _simulate(args):
    with _progress("%s n=%d" % (args.algo, args.nodes), args.max_rounds, args) as upd:
        res = simulate(args.nodes, args.algo, seed=args.seed, max_rounds=args.max_rounds,
                       tol=float(args.tol), graph=args.graph,
                       progress=lambda r, err: upd(r, "error %.2e" % err))
        upd(res["rounds_run"], "done", max(1, res["rounds_run"]))   # converged early: full bar
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0 if res["converged"] else 1
    keys = ["algo", "graph", "nodes", "converged", "rounds", "target_rounds", "messages",
            "rounds_run", "agreement_round", "initial_error", "final_error", "final_spread", "seconds"]
    keys += [k for k in sorted(res) if k not in keys and k not in ("tol", "seed", "max_rounds", "log2_n")]
    for k in keys:
        v = res.get(k)
        print("%-18s %s" % (k, ("%.4g" % v) if isinstance(v, float) else v))
    return 0 if res["converged"] else 1


def _parse_cells(text):
    return parse_cells(text)


def _seal(args):
    info = seal_to_cells(args.db, args.start, args.stop, args.k, args.n, _parse_cells(args.cells), args.out)
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        print("sealed entries [%d, %d) of %s: %d-of-%d shards, segment sha3-256 %s"
              % (info["start"], info["stop"], info["origin"], info["k"], info["n"], info["segment_sha3"]))
        for s in info["shards"]:
            print("  shard %3d -> %-16s %s" % (s["index"], s["cell"], s["path"]))
    return 0


def _restore(args):
    pub = None
    if args.pubkey:
        try:
            with open(args.pubkey, "rb") as f:
                pub = f.read()
        except OSError as e:
            raise UserError("cannot read --pubkey %s: %s" % (args.pubkey, e.strerror)) from None
    with _progress("restore", 1, args) as upd:
        def prog(done, total, what):
            upd(done, what, total)
        res = restore(args.dirs, args.k, args.db, public_key_pem=pub, progress=prog)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print("restored %d entries of %s into %s (root %s, checkpoint size %d verified; %d shards "
              "used, %d rejected)" % (res["size"], res["origin"], res["db"], res["root"],
                                       res["checkpoint_size"], res["shards_used"], len(res["rejected"])))
        if res.get("key_pinned"):
            print("  signing key: the --pubkey given (SHA-256 of the raw Ed25519 key %s...)"
                  % res["public_key_sha256_16"])
        else:
            print("  signing key: the one carried by the segments, SHA-256 of the raw Ed25519 key "
                  "%s... (not pinned: pass the cell's ledger-signing.pub as --pubkey)"
                  % res["public_key_sha256_16"])
        for r in res["rejected"]:
            print("  rejected %s: %s" % (r["path"], r["why"]))
    return 0


def _init(args):
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    files = init_mesh(args.dir, cells, days=args.days)
    if args.json:
        print(json.dumps(files, sort_keys=True))
    else:
        for k, v in files.items():
            print("%-12s %s" % (k, v))
    return 0


def _fetch(args):
    import asyncio
    from becomingone.mesh.fetch import fetch_nats, fetch_tls
    if args.nats:
        if not args.trust:
            raise UserError("fetch-shards --nats needs --trust DIR (the cells to ask)")
        rep = asyncio.run(fetch_nats(args.nats, args.trust, args.origin, args.out))
    elif args.tls and args.cell and args.peer:
        rep = asyncio.run(fetch_tls(args.tls, args.cell, args.peer, args.origin, args.out, trust_dir=args.trust))
    else:
        raise UserError("fetch-shards needs --nats URL --trust DIR, or --tls DIR --cell NAME --peer HOST:PORT ...")
    if args.json:
        print(json.dumps(rep, sort_keys=True))
    else:
        print("fetched %d shards of %s into %s" % (rep["shards"], rep["origin"], args.out))
        for c, n in sorted(rep["cells"].items()):
            print("  %-20s %d shards" % (c, n))
        for c, why in sorted(rep["unreachable"].items()):
            print("  %-20s unreachable: %s" % (c, why))
    return 0 if rep["shards"] else 1


def _revoke(args):
    path = revoke(args.dir, args.cell)
    print("revoked %s: %s (copy it beside ca.pem on every cell; running cells pick it up within a "
          "period, or at once on SIGHUP)" % (args.cell, path))
    return 0


def run(args):
    return {"simulate": _simulate, "seal": _seal, "restore": _restore, "init": _init,
            "revoke": _revoke, "fetch-shards": _fetch}[args.action](args)
