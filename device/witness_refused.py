"""A WITNESS record the host refused (ACK status other than OK; docs/DEVICE.md "Witness queue").
Rare, so loaded only when it happens. The record is never dropped for it (a QUARANTINE record
must reach the ledger): stamped below the device's current difficulty (the host raised it and
its CONFIG pow_bits arrived), it is re-stamped at the current pow_bits and mined again;
otherwise it stays sent and goes out again when its ACK wait (with backoff) runs out."""
from device import witness_queue as W


def refused(b, rec_id):
    q = b.queue
    bits = b.s.pow_bits
    for i in range(q.capacity):
        if q.state[i] == W.SENT and q.rec_id[i] == rec_id:
            rec = q.rec[i]
            n = q.length[i]
            if rec[n - 1] != bits:        # the record's last byte is its pow_bits
                rec[n - 1] = bits
                q.nonce_lo[i] = 0
                q.nonce_hi[i] = 0
                q.state[i] = W.READY if bits == 0 else W.MINING
            return True
    return False
