"""WITNESS records of the devices (docs/HOST.md, "WITNESS durability"): admission (proof-of-work
stamp at the host's difficulty, observe-only devices), de-duplication by (device, boot,
witness_id) including records committed before a host restart, a ledger entry per record, and
the ACK only after that entry is committed."""
import collections

from becomingone.ingest.admission import FULL
from shared import protocol as P

__all__ = ["WitnessDesk", "WITNESS_LAYER", "WITNESS_KIND_NAMES", "DEDUP_KEEP"]

# WITNESS.kind -> witnessing layer of its ledger entry
WITNESS_LAYER = {P.WITNESS_DECISION: "micro", P.WITNESS_COLLAPSE: "macro",
                 P.WITNESS_CONFIG_APPLIED: "micro", P.WITNESS_QUARANTINE_CLEARED: "micro",
                 P.WITNESS_MODEL_APPLIED: "micro", P.WITNESS_BOOT: "micro"}
WITNESS_KIND_NAMES = {P.WITNESS_DECISION: "decision", P.WITNESS_COLLAPSE: "collapse",
                      P.WITNESS_CONFIG_APPLIED: "config_applied",
                      P.WITNESS_QUARANTINE_CLEARED: "quarantine_cleared",
                      P.WITNESS_MODEL_APPLIED: "model_applied", P.WITNESS_BOOT: "boot"}
DEDUP_KEEP = 100000       # committed WITNESS keys remembered (and recalled from the ledger)


class WitnessDesk:
    """Owns the WITNESS keys pending a ledger commit and the last DEDUP_KEEP committed ones
    ((device, boot, witness_id) -> ledger index). Processing thread only, except that the
    ledger's commit callback (its writer thread) only posts `committed(key, entry, err)` back
    through post(key, entry, err). Ports: admission (the stamp check), sender (ACKs), sessions,
    tally (counters, the "pow" rejection), submit(kind, data, callback) (the ledger), micro(kind,
    device_id, **data) (a witnessing micro record). Raises nothing: refusals are ACKed REJECTED
    and counted."""

    def __init__(self, admission, sender, sessions, tally, submit, post, micro):
        self.admission = admission
        self.sender = sender
        self.sessions = sessions
        self.tally = tally
        self.submit = submit
        self.post = post
        self.micro = micro
        self.pending = set()
        self.done = collections.OrderedDict()      # (dev, boot, wid) -> ledger index
        self._listeners = []

    def subscribe(self, fn):
        """fn(device_id, entry data) after each WITNESS commit (processing thread; must only
        queue: the MQTT bridge publishes a decision change from it)."""
        self._listeners.append(fn)

    def recall(self, ledger, last=DEDUP_KEEP):
        """Committed WITNESS keys from the ledger's last entries, so that a device resending a
        record after a host restart (its ACK was lost) is ACKed, not stored twice."""
        size = ledger.size
        for e in ledger.entries(max(0, size - last), size):
            if '"kind":"witness"' in e.data_json and '"witness_id"' in e.data_json:
                d = e.data
                try:
                    self.done[(d["device"], d["boot"], d["witness_id"])] = e.index
                except KeyError:
                    continue
        self.tally.counts["witness_recalled"] = len(self.done)

    def again(self, session, frame):
        """The same WITNESS frame again (its sequence number refused as a duplicate before it got
        here): its record's ACK once more when the record is committed, so that a relay probing
        with the frame whose ACK it lost hears the coordinator. A record still pending gets its
        ACK at the commit; one never taken (refused, observe-only) had its answer already."""
        key = (session.device_id, session.boot_id, frame.fields["witness_id"])
        if key in self.done:
            self.tally.counts["witness_reacked"] += 1
            self._ack(session, key[2], P.ACK_OK)

    def receive(self, session, frame, level):
        """A WITNESS frame of `session` admitted at `level` (FULL or OBSERVE). Returns False
        when the record was refused for its stamp (counted as rejected "pow", not accepted)."""
        c = self.tally.counts
        c["witness_received"] += 1
        session.witness += 1
        fl = frame.fields
        wid = fl["witness_id"]
        key = (session.device_id, session.boot_id, wid)
        if key in self.done:
            c["witness_duplicate"] += 1
            self._ack(session, wid, P.ACK_OK)
            return
        if key in self.pending:
            c["witness_duplicate"] += 1
            return
        if level != FULL:
            c["witness_observed"] += 1
            self._ack(session, wid, P.ACK_REJECTED)
            return
        if self.admission.check_witness(frame) is not None:
            c["witness_rejected_pow"] += 1
            self.tally.reject("pow")
            self._ack(session, wid, P.ACK_REJECTED)
            return False
        data = {"device": session.device_id, "layer": WITNESS_LAYER.get(fl["kind"], "micro"),
                "boot": session.boot_id, "seq": frame.seq, "device_time_us": frame.time_us,
                "witness_id": wid, "witness": WITNESS_KIND_NAMES.get(fl["kind"], "?"),
                "beat": fl["beat"], "decision": P.DECISION_NAMES[fl["decision"]],
                "threat": fl["threat"] / 65536.0, "coherence": fl["coherence"] / 65536.0,
                "value": fl["value"], "pow_bits": fl["pow_bits"], "nonce": fl["nonce"]}
        t = session.clock.device_time_unix(frame.time_us)
        if t is not None:                 # the device's time of the event on the host's clock
            data["device_time_unix"] = round(t, 6)
        self.pending.add(key)
        post = self.post
        self.submit("witness", data, callback=lambda e, err: post(key, e, err))

    def committed(self, key, entry, err):
        """The ledger's answer for `key`: ACK OK once durable (no ACK on an error: the device
        sends the record again)."""
        self.pending.discard(key)
        c = self.tally.counts
        if err is not None:
            c["witness_ledger_errors"] += 1
            return
        c["witness_committed"] += 1
        self.done[key] = entry.index
        d = entry.data
        self.micro("device_witness", device_id=key[0], boot=key[1], witness_id=key[2],
                   witness=d.get("witness"), decision=d.get("decision"), ledger_index=entry.index)
        for fn in self._listeners:
            fn(key[0], d)
        while len(self.done) > DEDUP_KEEP:
            self.done.popitem(last=False)
        s = self.sessions.get(key[0])
        if s is not None and s.boot_id == key[1]:
            self._ack(s, key[2], P.ACK_OK)
            c["witness_acked"] += 1

    def _ack(self, session, wid, status):
        self.sender.send(session, P.ACK, {"acked_type": P.WITNESS, "status": status, "ref": wid})
