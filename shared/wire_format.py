# The wire's layouts: frame constants, message type codes, struct formats and payload lengths
# (docs/PROTOCOL.md is the byte-exact reference). Both runtimes. The device reads these (and
# shared/wire_check.py, shared/protocol_codes.py) and never loads shared/protocol.py, the host's
# catalogue with field names, the generic decoder and encoder, which re-exports everything here:
# on a Pico every loaded name is heap.
from shared.compat import const

VERSION = const(3)            # 3: session handshake (HELLO nonce, CHALLENGE, per-session keys:
#                               PROTOCOL.md section 10); 2: TELEMETRY features, HELLO limits
#                               (section 9)
FLAG_AUTH = const(0x01)
FLAG_BATCH = const(0x02)
FLAGS_KNOWN = const(0x03)

HEADER_LEN = const(15)
TAG_LEN = const(8)            # AUTH: HMAC-SHA256 truncated to 8 bytes, before the CRC
CRC_LEN = const(4)
MAX_FRAME = const(254)        # so COBS adds exactly one byte (see shared/cobs.py)
SEQ_LIMIT = const(0x40000000)  # seq and time_off are < 2^30
ERA_LIMIT = const(256)       # time_era is a u8: device time < 2^38 us (76.4 h) per boot
# TELEMETRY period_us (u16) saturates at 65535, the exact period is then HELLO's; TELEMETRY
# n_samples is a u8 (0..255).
MAX_BATCH = const(5)          # 15 + 1 + 5*44 + 8 + 4 = 248 <= MAX_FRAME
MAX_CONFIG_PAIRS = const(32)  # 15 + 5 + 32*5 + 8 + 4 = 192

HELLO = const(1)
TELEMETRY = const(2)
WITNESS = const(3)
ACK = const(4)
CONFIG = const(5)
MODEL = const(6)
TIME_SYNC = const(7)
CLEAR = const(8)
HEARTBEAT = const(9)
ERROR = const(10)
CHALLENGE = const(11)         # host -> device: its nonce; tagged with the new session key
TYPE_MAX = const(11)

# Header: ver_flags, type, device_id, boot_id, seq, time_era, time_off
HEADER_FMT = "<BBHHIBI"
HEADER_HALVES = "<BBHHHHBHH"  # the same 15 bytes with seq/time_off as u16 halves (no bigints)

# Fixed payloads (field names: shared/protocol.py). Strings ("Ns") are ASCII, NUL padded.
HELLO_FMT = "<8sBBBHHIIHBBBBBHBBBH16s"   # ... counts_per_unit_q4, nonce (16 bytes)
HELLO_LEN = const(53)
TELEMETRY_FMT = "<IHHiiIIBHhHHHBhhhH"
TELEMETRY_LEN = const(44)
WITNESS_FMT = "<IBIBHHiBI"
WITNESS_LEN = const(23)
WITNESS_RECORD_FMT = "<HHIBIBHHiB"  # device_id, boot_id, then the witness body without nonce
WITNESS_RECORD_LEN = const(23)
ACK_FMT = "<BBI"
ACK_LEN = const(6)
MODEL_FMT = "<Ifffff"
MODEL_LEN = const(24)
TIME_SYNC_FMT = "<BQHI"
TIME_SYNC_LEN = const(15)
CLEAR_FMT = "<BI"
CLEAR_LEN = const(5)
HEARTBEAT_FMT = "<IHHHIBHHHHHHHI"
HEARTBEAT_LEN = const(33)
ERROR_FMT = "<BBI16s"
ERROR_LEN = const(22)
CONFIG_HEAD_FMT = "<IB"   # config_version, count; then count x "<Bi" (key id, value)
CONFIG_PAIR_FMT = "<Bi"
CONFIG_HEAD_LEN = const(5)
CONFIG_PAIR_LEN = const(5)
CHALLENGE_FMT = "<16s"    # the host's nonce
CHALLENGE_LEN = const(16)


def sent_by_host(msg_type):
    """1: only the host sends it (device_id 0), 0: only devices (1..65535), 2: both."""
    if msg_type == CONFIG or msg_type == MODEL or msg_type == CLEAR or msg_type == CHALLENGE:
        return 1
    if msg_type == ACK or msg_type == ERROR or msg_type == TIME_SYNC:
        return 2
    return 0
