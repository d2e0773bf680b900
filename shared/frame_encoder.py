# The device's frame encoder: one preallocated buffer per frame kind, header and payload
# written with struct.pack_into, CRC stored in place. Without AUTH an encode allocates 0 bytes
# on MicroPython (tests/mpy/test_protocol_alloc.py measures it); with AUTH the SHA-256 objects
# and digests allocate a little per frame.
#
#   enc = Encoder(device_id, boot_id, auth=None, cobs=False)
#   buf = enc.telemetry(era, off, beat, period_us, ...)   -> bytearray (or memoryview) to send
#
# Every method takes the device time (time_era, time_off) of the frame first, returns the
# bytes to write (the raw frame for UDP, or 0x00|COBS|0x00 when cobs=True) and advances
# enc.seq. The returned object is reused by the next call of the same method: send it before
# encoding the next frame of that kind. Integers passed in must be small ints (< 2^30 in
# magnitude): the beat path never holds bigints. Values that can overflow their field
# (lateness, TELEMETRY period_us, counters) are saturated here. The era (u8) is checked (a
# ValueError past 255, never truncated). n_samples (u8) must be 0..255: the device guarantees it
# (shared/kairos.py bounds a beat to 255 samples; device/beat.py sends a summed record before it
# could pass 255); CPython's struct refuses more, MicroPython's would keep the low byte.
import struct

from shared import cobs
from shared import wire_format as P
from shared.protocol_codes import SYNC_REPLY
from shared.wire_format import TAG_LEN
from shared.crc import crc32_store

_HDR = P.HEADER_FMT
_WITNESS_HALVES = "<IBIBHHiBHH"  # WITNESS_FMT with the u32 nonce as two u16 halves
_HL = P.HEADER_LEN
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

SEQ_ROLL = const(0x3FFF0000)  # roll the boot id once enc.seq passes this (2^30 - 2^16)
# ... and device/beat.py rolls once the device time reaches era 255 (time_era is a u8)
_SEQ_MAX = const(0x3FFFFFFF)  # 2^30 - 1: the largest small int on a 32-bit port


def _sat16(v):
    return 0 if v < 0 else (0xFFFF if v > 0xFFFF else v)


class _Slot:
    """Buffers of one frame kind: raw frame and its COBS-framed copy, views per length."""

    def __init__(self, msg_type, payload_max, auth, counts=None):
        self.type = msg_type
        tag = TAG_LEN if auth else 0
        self.raw = bytearray(_HL + payload_max + tag + P.CRC_LEN)
        self.framed = bytearray(cobs.encoded_size(len(self.raw)))
        self.raw_views = None
        self.framed_views = None
        if counts:  # variable-length kind (batch): one view per record count, made once
            self.raw_views = []
            self.framed_views = []
            mr = memoryview(self.raw)
            mf = memoryview(self.framed)
            for c in range(counts + 1):
                n = _HL + 1 + P.TELEMETRY_LEN * c + tag + P.CRC_LEN   # a BATCH of c records
                self.raw_views.append(mr[:n])
                self.framed_views.append(mf[:cobs.encoded_size(n)])


class Encoder:
    def __init__(self, device_id, boot_id, auth=None, cobs=False, batch_max=P.MAX_BATCH):
        if not 1 <= device_id <= 0xFFFF:
            raise ValueError("device_id %r outside 1..65535" % (device_id,))
        if not 1 <= batch_max <= P.MAX_BATCH:
            raise ValueError("batch_max %r outside 1..%d" % (batch_max, P.MAX_BATCH))
        self.device_id = device_id
        self.auth = auth
        self.use_cobs = cobs
        self.batch_max = batch_max
        self.set_boot(boot_id)
        a = auth is not None
        self._vf = (P.VERSION << 4) | (P.FLAG_AUTH if a else 0)
        self._hello = _Slot(P.HELLO, P.HELLO_LEN, a)
        self._tel = _Slot(P.TELEMETRY, P.TELEMETRY_LEN, a)
        self._batch = _Slot(P.TELEMETRY, 1 + P.TELEMETRY_LEN * batch_max, a, batch_max)
        self._wit = _Slot(P.WITNESS, P.WITNESS_LEN, a)
        self._ack = _Slot(P.ACK, P.ACK_LEN, a)
        self._hb = _Slot(P.HEARTBEAT, P.HEARTBEAT_LEN, a)
        self._err = _Slot(P.ERROR, P.ERROR_LEN, a)
        self._sync = _Slot(P.TIME_SYNC, P.TIME_SYNC_LEN, a)
        self.batch_count = 0
        self._sealed_end = 0
        self._sealed_count = 0

    def __repr__(self):
        return "<Encoder dev=%d boot=%d seq=%d auth=%s>" % (
            self.device_id, self.boot_id, self.seq, "on" if self.auth is not None else "off")

    def set_boot(self, boot_id):
        """Start a new (device, boot) stream: seq restarts at 0."""
        if not 1 <= boot_id <= 0xFFFF:
            raise ValueError("boot_id %r outside 1..65535" % (boot_id,))
        self.boot_id = boot_id
        self.seq = 0
        self.batch_count = 0

    @property
    def needs_new_boot(self):
        """True once seq passed SEQ_ROLL: the device must start a new epoch (set_boot with a new
        boot id, device time from 0) before seq reaches 2^30; it does the same once its time
        reaches era 255 (device/beat.py; PROTOCOL.md 1.1). _finish refuses era > 255."""
        return self.seq >= SEQ_ROLL

    # ---- common tail: header, tag, CRC, optional COBS
    def _finish(self, slot, era, off, end, flags=0, count=-1):
        return self._frame(slot, self._seal(slot, era, off, end, flags), count)

    def _seal(self, slot, era, off, end, flags):
        # header and tag (the frame's seq taken); returns the end of the tag
        if self.seq > _SEQ_MAX:
            raise ValueError("seq reached 2^30: call set_boot() with a new boot id first")
        if era > 0xFF:
            raise ValueError("era > 255")
        buf = slot.raw
        struct.pack_into(_HDR, buf, 0, self._vf | flags, slot.type, self.device_id,
                         self.boot_id, self.seq, era, off)
        if self.auth is not None:
            self.auth.tag_into(buf, end)
            end += TAG_LEN
        self.seq += 1
        return end

    def _frame(self, slot, end, count):
        # CRC and framing of a sealed frame
        buf = slot.raw
        crc32_store(buf, end)
        end += P.CRC_LEN
        if self.use_cobs:
            cobs.encode_into(buf, end, slot.framed, 0)
            return slot.framed if count < 0 else slot.framed_views[count]
        return buf if count < 0 else slot.raw_views[count]

    def hello(self, era, off, board, fw_major, fw_minor, fw_patch, capabilities, fs_hz,
              period_us, phase_step, lag_samples, adc_bits, sum_shift, pow_bits,
              telemetry_every, spb_max, period_min_us, reset_cause, boot_flags,
              kairos_decim=1, counts_per_unit_q4=0, nonce=b""):
        """board: bytes of at most 8 ASCII characters (keep it a constant). nonce: the 16
        bytes of the handshake (device/session.py); b"" (zeros) for a keyless device."""
        s = self._hello
        struct.pack_into(P.HELLO_FMT, s.raw, _HL, board, fw_major, fw_minor, fw_patch,
                         capabilities, fs_hz, period_us, phase_step, lag_samples, adc_bits,
                         sum_shift, pow_bits, telemetry_every, spb_max, period_min_us,
                         reset_cause, boot_flags, kairos_decim, _sat16(counts_per_unit_q4),
                         nonce)
        return self._finish(s, era, off, _HL + P.HELLO_LEN)

    def telemetry(self, era, off, beat, period_us, lateness_us, dT_re, dT_im, dE0, dEL,
                  n_samples, coherence, pid_error, pid_output, threat, o_weight,
                  decision_state, level=0, kurt=0, crest=0, anoms=0):
        s = self._tel
        struct.pack_into(P.TELEMETRY_FMT, s.raw, _HL, beat, _sat16(period_us),
                         _sat16(lateness_us), dT_re, dT_im, dE0, dEL, n_samples, coherence,
                         pid_error, pid_output, threat, o_weight, decision_state, level, kurt,
                         crest, anoms)
        return self._finish(s, era, off, _HL + P.TELEMETRY_LEN)

    def batch_add(self, beat, period_us, lateness_us, dT_re, dT_im, dE0, dEL, n_samples,
                  coherence, pid_error, pid_output, threat, o_weight, decision_state, level=0,
                  kurt=0, crest=0, anoms=0):
        """Append one beat to the pending BATCH frame; returns the number of beats held.
        When it equals batch_max, call batch_flush() before adding more."""
        c = self.batch_count
        if c >= self.batch_max:
            raise ValueError("batch full (%d beats): call batch_flush() first" % c)
        struct.pack_into(P.TELEMETRY_FMT, self._batch.raw, _HL + 1 + c * P.TELEMETRY_LEN,
                         beat, _sat16(period_us), _sat16(lateness_us), dT_re, dT_im, dE0, dEL,
                         n_samples, coherence, pid_error, pid_output, threat, o_weight,
                         decision_state, level, kurt, crest, anoms)
        self.batch_count = c + 1
        return c + 1

    def batch_flush(self, era, off):
        """The BATCH frame of the beats added so far (time of the last beat), or None."""
        if self.batch_seal(era, off) == 0:
            return None
        return self.batch_frame()

    def batch_seal(self, era, off):
        """batch_flush in two halves (each fits an idle time on a Pico): this one writes the
        header (time of the last beat) and the tag and returns the beats held (0: none, nothing
        done); batch_frame() then adds the CRC and framing and returns the frame, which must
        happen before the next batch_add (they share the buffer)."""
        c = self.batch_count
        if c == 0:
            return 0
        s = self._batch
        s.raw[_HL] = c
        self.batch_count = 0
        self._sealed_end = self._seal(s, era, off, _HL + 1 + c * P.TELEMETRY_LEN, P.FLAG_BATCH)
        self._sealed_count = c
        return c

    def batch_frame(self):
        """The BATCH frame batch_seal() sealed."""
        return self._frame(self._batch, self._sealed_end, self._sealed_count)

    def witness(self, era, off, witness_id, kind, beat, decision, threat, coherence, value,
                pow_bits, nonce, nonce_hi=0):
        """nonce: the u32 nonce, or (to stay clear of bigints on a Pico) its bits 0..29 with
        bits 30..31 in nonce_hi; written as two u16 halves either way."""
        s = self._wit
        struct.pack_into(_WITNESS_HALVES, s.raw, _HL, witness_id, kind, beat, decision, threat,
                         coherence, value, pow_bits, nonce & 0xFFFF,
                         (nonce >> 16) | (nonce_hi << 14))
        return self._finish(s, era, off, _HL + P.WITNESS_LEN)

    def ack(self, era, off, acked_type, status, ref):
        s = self._ack
        struct.pack_into(P.ACK_FMT, s.raw, _HL, acked_type, status, ref)
        return self._finish(s, era, off, _HL + P.ACK_LEN)

    def heartbeat(self, era, off, beats, late_p50_us, late_p99_us, late_max_us, heap_free,
                  witness_queue, rx_ok, rx_crc, rx_cobs, rx_auth, rx_replay, rx_other,
                  tx_dropped, samples_lost=0):
        """samples_lost: a counter the device keeps below 2^30 (saturating)."""
        s = self._hb
        struct.pack_into(P.HEARTBEAT_FMT, s.raw, _HL, beats, _sat16(late_p50_us),
                         _sat16(late_p99_us), _sat16(late_max_us), heap_free,
                         witness_queue if witness_queue < 255 else 255, _sat16(rx_ok),
                         _sat16(rx_crc), _sat16(rx_cobs), _sat16(rx_auth), _sat16(rx_replay),
                         _sat16(rx_other), _sat16(tx_dropped), samples_lost)
        return self._finish(s, era, off, _HL + P.HEARTBEAT_LEN)

    def error(self, era, off, code, ref_type, ref, text):
        """text: bytes, at most 16 used; bytes outside printable ASCII are sent as '?'."""
        s = self._err
        raw = s.raw
        struct.pack_into(P.ERROR_FMT, raw, _HL, code, ref_type, ref, text)
        # keep the frame decodable whatever the text: non-printable bytes become '?', and
        # everything after the first NUL is NUL (in place, no allocation)
        pad = False
        for i in range(_HL + 6, _HL + P.ERROR_LEN):      # the 16 text bytes
            b = raw[i]
            if pad or b == 0:
                pad = True
                raw[i] = 0
            elif b < 0x20 or b > 0x7E:
                raw[i] = 0x3F
        return self._finish(s, era, off, _HL + P.ERROR_LEN)

    def time_sync_reply(self, era, off, host_t1_us, rx_era, rx_off):
        """Reply to a TIME_SYNC request: echo the host's t1, give the device receive time;
        the header time (era, off) is the device transmit time."""
        s = self._sync
        struct.pack_into(P.TIME_SYNC_FMT, s.raw, _HL, SYNC_REPLY, host_t1_us, rx_era, rx_off)
        return self._finish(s, era, off, _HL + P.TIME_SYNC_LEN)


def witness_record_into(buf, off, device_id, boot_id, witness_id, kind, beat, decision, threat,
                        coherence, value, pow_bits):
    """Write the WITNESS proof-of-work record into buf at off (no allocation); returns its
    length (23 bytes)."""
    struct.pack_into(P.WITNESS_RECORD_FMT, buf, off, device_id, boot_id, witness_id, kind, beat,
                     decision, threat, coherence, value, pow_bits)
    return P.WITNESS_RECORD_LEN
