"""Mesh between cells (a cell = a host and its devices). docs/MESH.md describes each part.

    from becomingone.mesh.consensus import simulate, ALGOS, GRAPHS
    simulate(n, algo, seed=0, max_rounds=2000, tol=1e-6, graph="ws", progress=None) -> dict
        algo in emtd | swarm | pushsum | versioned; graph in ws | complete; the dict has rounds
        (None if not converged), messages, converged, rounds_run, final_error, seconds, ...

    from becomingone.mesh.ring import Ring, parse_cells, key_position
    ring = Ring({"a": (capacity, load), ...} | ["a", "b"], vnodes=100)   weight = capacity/(1+load)
    ring.get(key) -> cell; ring.get_n(key, n) -> [n distinct cells]; ring.shares() -> {cell: f}
    ring.set_load(cell, load) / set_capacity / add / remove -> fraction of the key space moved
    ring.assign_devices(ids) -> {id: cell}

    from becomingone.mesh.archive import seal_to_cells, restore, ArchiveError
    seal_to_cells(ledger_or_db_path, start, stop_or_None, k, n, ring, out_dir) -> placement dict
        (shards written as out_dir/<cell>/<origin>_<a>-<b>_<i>of<n>.shard)
    restore(dirs, k, new_db_path, public_key_pem=None, progress=None) -> summary dict
        (verifies chain, root, signed checkpoint before writing; ArchiveError if < k valid shards)

    from becomingone.mesh.tls import init_mesh, MeshServer, connect, MeshTLSError
    init_mesh(folder, ["cell-a", ...], days=825) -> {name: path}   (ECDSA P-256, keys 0600)
    srv = MeshServer(folder, cell, async handler(peer_cell, payload) -> bytes)
    port = await srv.start(host, port=18789); await srv.close()
    peer = await connect(folder, cell, host, port, expect=None); await peer.request(b) -> bytes

    from becomingone.mesh.aggregate import VersionedAggregate       (T_global = sum w_P T_hat_P)
    agg = VersionedAggregate(origin, signing_key=ed25519_priv, keys={origin: pub}, ttl=30.0)
    agg.publish(T_hat, devices) -> entry; agg.merge(entries) -> changed; agg.digest();
    agg.delta(peer_digest) -> entries; agg.t_global() -> (complex, {origin: weight})
    from becomingone.mesh.antientropy import AntiEntropy            (push-pull over mutual TLS)
    ae = AntiEntropy(agg, tls_folder, cell, peers=[(host, port, cell), ...])
    await ae.start(host, port); await ae.exchange(); await ae.run(interval=1.0); await ae.close()

    from becomingone.mesh.replica import ReplicaStore, ReplicaError   (verified replicas, split views)
    store = ReplicaStore(folder, keys={origin: ed25519_pub}); store.observe(origin, note) -> status
    store.apply(origin, export_lines, note_of_new_size) -> n; store.size/root/latest/entries
    from becomingone.mesh.replication import Replicator               (serve + pull over mutual TLS)
    rep = Replicator(ledger_or_None, store, tls_folder, cell, peers); await rep.start(host, port)
    await rep.pull((host, port, cell)) -> {"applied", "refused", "alerts", "error"}

    from becomingone.mesh.swim import Swim, ALIVE, SUSPECT, DEAD       (SWIM core, transport-agnostic)
    from becomingone.mesh.swimnet import SwimNode                      (SWIM over mutual TLS)
    node = SwimNode(tls_folder, cell, host, port, seeds=["h:p"], interval=1.0, timeout=0.3)
    await node.start(); await node.run(report=None); node.swim.view() -> {cell: (state, inc)}

    from becomingone.mesh.backends.embedded import MeshNode      (one cell: all of the above)
    from becomingone.mesh.trust import write_trust, load_trust
    node = MeshNode(tls, load_trust(trust_dir), cell, ledger, replicas_dir, host, port, seeds)
    await node.start(); await node.period(T_hat, devices); node.status() -> dict

    node = MeshNode(..., advertise=None, trust_dir=None, pin=False, fanout=None)   pin peers'
        ledger keys over mTLS (op identity); node.replicates(origin): full replica by the ring
    from becomingone.mesh.heads import HeadTracker                  (verified heads, no entries)
    heads = HeadTracker(path_json, store); await heads.check(origin, note, prove) -> status
    Replicator(..., replicate=pred, heads=heads)              origins beyond pred: head only

    from becomingone.mesh.service import MeshService                 (the mesh in a coordinator)
    svc = MeshService(cfg, ledger, data_dir); svc.check(); svc.start(); svc.publish(T, n)
    svc.status() -> dict; svc.alerts_since(n) -> (alerts, n'); svc.stop()
    (host/mesh/bridge.py MeshBridge: T_hat from the sync layer, alerts -> ledger, pulse P)

    from becomingone.mesh.backends.nats import NatsCell, NatsMesh    (cluster scale, NATS JetStream)
    cell = NatsCell(url, cell, ledger=led, store=store, replicas=1)
    await cell.connect(); await cell.publish_ledger(); await cell.pull(origin); await cell.head(origin)
    await cell.follow(origin, on_event); await cell.close()
    mesh = NatsMesh(url, cell, ledger, trust_dir, replicas_dir, fanout=3, group_size=16)
    from becomingone.mesh.hierarchy import Layout, TreeAggregate     (T_global + membership tree)
    from becomingone.mesh.ring import ledger_holders, replicated_by    (the replication fan-out)
"""
