# CRC-32 (IEEE 802.3, the zlib/binascii one) written straight into a frame buffer.
#
# crc32_store(buf, n): CRC of buf[0:n] stored little-endian at buf[n:n+4]; allocates nothing.
# crc32_check(buf, n): True when buf[n:n+4] holds the CRC of buf[0:n].
# crc32(data):         the CRC as an int (host convenience; a bigint on a Pico when >= 2^30).
#
# Why viper on MicroPython: binascii.crc32 returns an int, and on a Pico every value >= 2^30 is a
# heap bigint (an allocation per frame), and crc32 over buf[0:n] would need a memoryview slice
# (another allocation). The viper function works on machine words, reads the buffer through
# ptr8 and stores the 4 bytes itself. CPython uses zlib.crc32 (C speed).
import sys

if sys.implementation.name == "micropython":
    import micropython

    _TABLE = bytearray(1024)  # 256 x u32, little-endian, filled once at import

    @micropython.viper
    def _fill_table(tbl):
        t = ptr32(tbl)
        poly = (uint(0xEDB8) << 16) | uint(0x8320)
        for i in range(256):
            c = uint(i)
            for _ in range(8):
                if c & 1:
                    c = (c >> 1) ^ poly
                else:
                    c = c >> 1
            t[i] = c

    _fill_table(_TABLE)

    # One function computes and then stores or compares: a viper function that returned the
    # CRC to a caller would box it (a bigint on a 32-bit port when >= 2^30).
    @micropython.viper
    def _crc_op(buf, n: int, store: int) -> int:
        p = ptr8(buf)
        t = ptr32(_TABLE)
        ones = (uint(0xFFFF) << 16) | uint(0xFFFF)
        c = ones
        i = 0
        while i < n:
            c = uint(t[(c ^ uint(p[i])) & 0xFF]) ^ (c >> 8)
            i += 1
        c = c ^ ones
        if store:
            p[n] = c & 0xFF
            p[n + 1] = (c >> 8) & 0xFF
            p[n + 2] = (c >> 16) & 0xFF
            p[n + 3] = (c >> 24) & 0xFF
            return 1
        if uint(p[n]) != (c & 0xFF):
            return 0
        if uint(p[n + 1]) != ((c >> 8) & 0xFF):
            return 0
        if uint(p[n + 2]) != ((c >> 16) & 0xFF):
            return 0
        if uint(p[n + 3]) != ((c >> 24) & 0xFF):
            return 0
        return 1

    def crc32_store(buf, n):
        _crc_op(buf, n, 1)

    def crc32_check(buf, n):
        return _crc_op(buf, n, 0) == 1

    def crc32(data):
        import binascii
        return binascii.crc32(data)

else:
    import struct
    import zlib

    def crc32_store(buf, n):
        struct.pack_into("<I", buf, n, zlib.crc32(memoryview(buf)[:n]))

    def crc32_check(buf, n):
        if len(buf) == n + 4:  # whole frame: its CRC-32 is the constant residue
            return zlib.crc32(buf) == 0x2144DF1C
        mv = memoryview(buf)
        return zlib.crc32(mv[:n]) == struct.unpack_from("<I", mv, n)[0]

    def crc32(data):
        return zlib.crc32(data)
