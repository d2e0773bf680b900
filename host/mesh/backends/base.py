"""MeshBackend: what one cell's mesh is, whatever carries it (the python-can BusABC pattern:
a small abc, a registry by name, one contract suite for every backend in tests/contract/).

    backend = make_backend("embedded" | "nats", ...)   (becomingone/mesh/service.py does this)
    await backend.start(); await backend.period(T_hat, devices); await backend.close()
    backend.members() / alive_count() / status_fields(); backend.agg, .store, .trust, .alerts

The mesh service runs a backend in its own asyncio loop, one period per sync.mesh.interval,
and builds the status from this interface alone.
"""
import abc

__all__ = ["MeshBackend"]


class MeshBackend(abc.ABC):
    """One cell's membership, T_global aggregate (`agg`: mesh/aggregate.py VersionedAggregate)
    and verified replicas of its peers' ledgers (`store`: mesh/replica.py ReplicaStore), with
    `trust` {cell: (ledger origin, Ed25519 public key)} and `alerts` (dicts: status, origin,
    peer, why, evidence; appended as split views or forged entries are found). Raises MeshError
    (or UserError for settings) from start(); period() may raise MeshError, OSError or
    asyncio.TimeoutError for one period (the service counts it and tries the next)."""

    cell = None
    agg = None
    store = None
    trust = None
    alerts = None

    @abc.abstractmethod
    async def start(self):
        """Connect or listen; after it, period() may run."""

    @abc.abstractmethod
    async def period(self, t_hat, devices):
        """One mesh period: publish this cell's value (T_hat over `devices` devices), learn the
        others', catch up replicas, note membership."""

    @abc.abstractmethod
    async def close(self):
        """Leave the mesh and release every connection."""

    @abc.abstractmethod
    def members(self):
        """{cell: {"state": "alive" | "suspect" | "dead", "incarnation", "addr"}}, this cell
        included."""

    @abc.abstractmethod
    def alive_count(self):
        """Cells not declared dead, this one included."""

    def replicates(self, origin):
        """Whether this cell keeps a full replica of `origin`'s ledger (else only its head)."""
        return True

    def head_size(self, origin):
        """Verified size of `origin`'s ledger head, for an origin replicated as a head only."""
        return 0

    def request_reload(self):
        """Reload trust (and certificates) at the next period; safe from any thread."""

    def status_fields(self):
        """What this backend adds to the mesh status (its address, its failure counters)."""
        return {}

    def origin_cell(self, origin):
        """The cell whose ledger is `origin`, or None."""
        return next((c for c, (o, _p) in self.trust.items() if o == origin), None)
