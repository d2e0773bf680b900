"""Cells of the mesh witness each other's ledgers (docs/LEDGER.md §11, docs/MESH.md): every cell
runs a witness (host/ledger/witness.py) for the ledgers of the cells it trusts, with its own
ledger key as cosigner key (peers pinned it already; a cosignature's signed message starts with
"cosignature/v1", a checkpoint's with the origin, so the two cannot be confused) under the name
`becomingone.witness/<cell>`; and each period it asks one alive peer to cosign its own latest
checkpoint (host/ledger/cosigner.py over the mesh's mutual-TLS connections, message
{"op": "add-checkpoint", "body": ...} -> {"status", "type", "body"}).

    mc = MeshCosigning(cell, ledger, key, folder, trust, every=10.0)  # trust: {cell: (origin, pub)}
    mc.trust(cell, origin, pub)                 # a newly pinned peer
    await mc.handle(msg) -> reply bytes         # a peer asks this cell to cosign
    await mc.period(peer, request)              # ask `peer` to cosign ours
"""
import json
import time

from becomingone.ledger.cosigner import Cosigner, WitnessRef
from becomingone.ledger.witness import Witness, WitnessError

__all__ = ["MeshCosigning", "witness_name"]


def witness_name(cell):
    """The cosigner name of a cell (its cosignature lines and ledger verify use it)."""
    return "becomingone.witness/%s" % cell


class MeshCosigning:
    """This cell's witness for its peers' ledgers and the cosigner of its own (module
    docstring). Raises nothing from handle()/period(): refusals are answered, failures counted.
    period() asks at most once per `every` seconds (each ask may sign a new checkpoint)."""

    def __init__(self, cell, ledger, key, folder, trust, every=10.0):
        self.cell = cell
        self.ledger = ledger
        self.every = float(every)
        self._asked = None
        name = witness_name(cell)
        self.witness = Witness(folder, key=key, name=name)
        self.cosigner = Cosigner(ledger)
        self._refs = {}
        for c, (origin, pub) in trust.items():
            self.trust(c, origin, pub)

    def trust(self, cell, origin, pub):
        if cell == self.cell:
            return
        try:
            self.witness.trust(origin, pub)
        except WitnessError:
            pass                          # a peer whose key changed: never witnessed anew
        ref = WitnessRef(witness_name(cell), pub, None, "mesh:%s" % cell)
        self._refs[cell] = ref
        self.cosigner.witnesses = list(self._refs.values())

    def forget(self, cell):
        """A cell no longer trusted (its trust file removed): its cosignatures are not asked for."""
        if self._refs.pop(cell, None) is not None:
            self.cosigner.witnesses = list(self._refs.values())

    async def handle(self, msg):
        body = msg.get("body")
        if not isinstance(body, str):
            return json.dumps({"status": 400, "type": "text/plain", "body": "body must be text"}).encode()
        status, ctype, out = self.witness.add_checkpoint(body.encode("utf-8"))
        return json.dumps({"status": status, "type": ctype,
                           "body": out.decode("utf-8", "replace")}).encode()

    async def period(self, peer_cell, request):
        """Ask `peer_cell` to cosign this ledger's latest checkpoint. request(payload bytes) ->
        awaitable reply bytes over the mesh connection."""
        ref = self._refs.get(peer_cell)
        if ref is None or self.ledger.size == 0:
            return False
        now = time.monotonic()
        if self._asked is not None and now - self._asked < self.every:
            return False
        self._asked = now
        note = self.cosigner.note()

        async def send(body):
            try:
                raw = await request(json.dumps({"op": "add-checkpoint",
                                                "body": body.decode("utf-8")}).encode("ascii"))
                r = json.loads(raw)
                return int(r["status"]), str(r.get("type", "")), str(r.get("body", "")).encode()
            except Exception as e:       # an unreachable peer, a bad answer: counted
                return 0, "", str(e).encode("utf-8", "replace")
        return await self.cosigner.submit_async(ref, note, send)

    def status(self):
        s = self.cosigner.status()
        s["witnessing"] = self.witness.summary()["heads"]
        return s
