"""A new epoch without rebooting (docs/PROTOCOL.md 1.1): needed before the encoder's seq reaches
2^30 or the device time's era 256 (the header's time_era is a u8). Rare (every 76 h, or 2^30
frames), so this module is imported only when it happens and costs no resident heap.

new_epoch(beat, boot_id=None): the pending BATCH goes out under the old boot id; then a new
random boot id (never the old one, never 0), seq 0, device time (0, 0), beat index 0, and a
HELLO. Queued WITNESS records are re-stamped with the new boot id (their proof of work covers
device_id and boot_id) and mined again (at once READY when their pow_bits is 0): none is lost.
"""
import os

from device import witness_queue as W


def rebind_witnesses(q, boot_id):
    """Write boot_id into bytes 2..3 of every queued record and queue it for mining again."""
    n = 0
    for i in range(q.capacity):
        if q.state[i] != W.FREE and q.length[i] >= 4:
            rec = q.rec[i]
            rec[2] = boot_id & 0xFF
            rec[3] = (boot_id >> 8) & 0xFF
            q.nonce_lo[i] = 0
            q.nonce_hi[i] = 0
            q.sends[i] = 0
            q.wait_ms[i] = q.timeout_ms
            q.state[i] = W.READY if rec[q.length[i] - 1] == 0 else W.MINING
            n += 1
    return n


def new_epoch(b, boot_id=None):
    enc = b.enc
    tm = b.time
    if getattr(b, "sealed", False):       # a frame signed in the last idle time: out first
        b.sealed = False
        b.link.send(enc.batch_frame())
    if enc.batch_count:
        b.link.send(enc.batch_flush(tm.era, tm.off))
    if boot_id is None:
        r = os.urandom(2)
        boot_id = r[0] | (r[1] << 8)
    old = enc.boot_id
    while boot_id == 0 or boot_id == old:
        boot_id = (boot_id + 1) & 0xFFFF
    enc.set_boot(boot_id)
    tm.update()
    tm.era = 0
    tm.off = 0
    b.beat = 0
    b.last_witness_beat = 0
    b.mining_slot = -1
    rebind_witnesses(b.queue, boot_id)
    hs = b.host.hs if b.host is not None else None
    if hs is not None:            # a session key belongs to one boot id: a new handshake
        hs.restart(b)
    else:
        b.send_hello()
    return boot_id
