"""WITNESS records in the coordinator (a mixin of host/coordinator.py's Coordinator; runs in its
processing thread): admission (proof-of-work stamp at the host's difficulty, observe-only
devices), de-duplication by (device, boot, witness_id) including records committed before a
host restart, a ledger entry per record, and the ACK only after that entry is committed."""
from becomingone.ingest.admission import FULL
from shared import protocol as P

# WITNESS.kind -> witnessing layer of its ledger entry
WITNESS_LAYER = {P.WITNESS_DECISION: "micro", P.WITNESS_COLLAPSE: "macro",
                 P.WITNESS_CONFIG_APPLIED: "micro", P.WITNESS_QUARANTINE_CLEARED: "micro",
                 P.WITNESS_MODEL_APPLIED: "micro", P.WITNESS_BOOT: "micro"}
WITNESS_KIND_NAMES = {1: "decision", 2: "collapse", 3: "config_applied", 4: "quarantine_cleared",
                      5: "model_applied", 6: "boot"}
DEDUP_KEEP = 100000       # committed WITNESS keys remembered (and recalled from the ledger)


class WitnessMixin:
    def _recall_witnesses(self, last=DEDUP_KEEP):
        """Committed WITNESS keys from the ledger's last entries, so that a device resending a
        record after a host restart (its ACK was lost) is ACKed, not stored twice."""
        size = self.ledger.size
        for e in self.ledger.entries(max(0, size - last), size):
            if '"kind":"witness"' in e.data_json and '"witness_id"' in e.data_json:
                d = e.data
                try:
                    self.witness_done[(d["device"], d["boot"], d["witness_id"])] = e.index
                except KeyError:
                    continue
        self.counters["witness_recalled"] = len(self.witness_done)

    def on_witness(self, s, f, level):
        c = self.counters
        c["witness_received"] += 1
        s.witness += 1
        fl = f.fields
        key = (s.device_id, s.boot_id, fl["witness_id"])
        if key in self.witness_done:
            c["witness_duplicate"] += 1
            self._ack_witness(s, fl["witness_id"], P.ACK_OK)
            return
        if key in self.witness_pending:
            c["witness_duplicate"] += 1
            return
        if level != FULL:
            c["witness_observed"] += 1
            self._ack_witness(s, fl["witness_id"], P.ACK_REJECTED)
            return
        if self.admission.check_witness(f) is not None:
            c["witness_rejected_pow"] += 1
            self.reject("pow")
            self._ack_witness(s, fl["witness_id"], P.ACK_REJECTED)
            return
        data = {"device": s.device_id, "layer": WITNESS_LAYER.get(fl["kind"], "micro"),
                "boot": s.boot_id, "seq": f.seq, "device_time_us": f.time_us,
                "witness_id": fl["witness_id"], "witness": WITNESS_KIND_NAMES.get(fl["kind"], "?"),
                "beat": fl["beat"], "decision": P.DECISION_NAMES[fl["decision"]],
                "threat": fl["threat"] / 65536.0, "coherence": fl["coherence"] / 65536.0,
                "value": fl["value"], "pow_bits": fl["pow_bits"], "nonce": fl["nonce"]}
        self.witness_pending.add(key)
        inbox = self.inbox
        self._ledger_submit("witness", data,
                            callback=lambda e, err: inbox.put(("committed", key, e, err)))

    def _witness_committed(self, key, entry, err):
        self.witness_pending.discard(key)
        if err is not None:
            self.counters["witness_ledger_errors"] += 1
            return                         # no ACK: the device sends it again
        self.counters["witness_committed"] += 1
        self.witness_done[key] = entry.index
        d = entry.data
        self._micro("device_witness", device_id=key[0], boot=key[1], witness_id=key[2],
                    witness=d.get("witness"), decision=d.get("decision"), ledger_index=entry.index)
        if self.mqtt is not None:             # a decision change: published at once
            self.mqtt.on_witness(key[0], d)
        while len(self.witness_done) > DEDUP_KEEP:
            self.witness_done.popitem(last=False)
        s = self.sessions.get(key[0])
        if s is not None and s.boot_id == key[1]:
            self._ack_witness(s, key[2], P.ACK_OK)
            self.counters["witness_acked"] += 1

    def _ack_witness(self, s, wid, status):
        self.send(s, P.ACK, {"acked_type": P.WITNESS, "status": status, "ref": wid})
