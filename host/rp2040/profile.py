"""Where the chip's cycles go: the emulator samples the program counter every 64 instructions
while the measuring script (chip_beat.py) runs its timed beats (idle() and step(), not the
setup), and the samples are attributed to the
firmware's functions by its symbol table. The MicroPython VM's own functions (mp_execute_bytecode,
gc_*, mp_obj_*, float routines, ...) show what the Python code costs in C; `.mpy` native/viper
code runs from RAM (shown as "ram: native code"), the bootrom's routines (e.g. the soft-float
and division helpers) as "bootrom".

    python -m becomingone.rp2040 profile [--board pico] [--beats 100] [--top 30]
    python -m becomingone.rp2040 syms RPI_PICO.elf RPI_PICO.syms     # symbols of another build

Symbol tables: the fixture's firmware/RPI_PICO.syms (from the ELF of the same build, whose sha256
is in firmware/README.md), or any ELF (parsed here: no binutils needed).
"""
import bisect
import json
import os
import struct
import tempfile

from becomingone.rp2040 import chip
from becomingone.rp2040.errors import UserError

RAM_START, RAM_END = 0x20000000, 0x20042000


def elf_functions(path):
    """[(address, size, name)] of the FUNC symbols of a 32-bit little-endian ELF."""
    with open(path, "rb") as f:
        d = f.read()
    if d[:4] != b"\x7fELF" or d[4] != 1 or d[5] != 1:
        raise UserError("%s is not a 32-bit little-endian ELF file" % path)
    shoff, = struct.unpack_from("<I", d, 0x20)
    shentsize, shnum, _ = struct.unpack_from("<HHH", d, 0x2E)
    secs = [struct.unpack_from("<IIIIIIIIII", d, shoff + i * shentsize) for i in range(shnum)]
    symtab = next((s for s in secs if s[1] == 2), None)      # SHT_SYMTAB
    if symtab is None:
        raise UserError("%s has no symbol table (stripped?)" % path)
    strtab = secs[symtab[6]]
    out = []
    for i in range(symtab[5] // 16):
        name, value, size, info, _other, shndx = struct.unpack_from("<IIIBBH", d, symtab[4] + i * 16)
        if info & 0xF == 2 and shndx:                              # STT_FUNC, defined
            o = strtab[4] + name
            out.append((value & ~1, size, d[o:d.index(b"\0", o)].decode("utf-8", "replace")))
    out.sort()
    return out


def write_syms(elf, out):
    fns = elf_functions(elf)
    import hashlib
    with open(elf, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(out, "w") as f:
        f.write("# function symbols of %s (sha256 %s): address size name\n"
                % (os.path.basename(elf), digest))
        for a, s, n in fns:
            f.write("%08x %d %s\n" % (a, s, n))
    return len(fns)


def load_syms(path=None):
    path = path or chip.FIXTURE_SYMS
    if not os.path.exists(path):
        raise UserError("no symbol table %s" % path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"\x7fELF":
        return elf_functions(path)
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            a, s, n = line.split(None, 2)
            out.append((int(a, 16), int(s), n.strip()))
    out.sort()
    return out


def attribute(hist, syms):
    """{pc: samples} -> [(name, samples)] by function, biggest first."""
    addrs = [a for a, _s, _n in syms]
    by = {}
    for pc, c in hist:
        if pc < 0x4000:
            name = "bootrom"
        elif RAM_START <= pc < RAM_END:
            i = bisect.bisect_right(addrs, pc) - 1
            # firmware functions placed in RAM (flash routines, ISRs) have symbols; the rest of
            # RAM is the heap: machine code of @native/@viper functions loaded from .mpy files
            name = syms[i][2] if i >= 0 and syms[i][0] <= pc < syms[i][0] + max(2, syms[i][1]) \
                else "ram: native code (.mpy @native/@viper)"
        else:
            i = bisect.bisect_right(addrs, pc) - 1
            name = syms[i][2] if i >= 0 else "?"
        by[name] = by.get(name, 0) + c
    return sorted(by.items(), key=lambda x: -x[1])


# functions grouped into what they are for (first matching prefix wins)
GROUPS = (
    ("VM: bytecode dispatch", ("mp_execute_bytecode",)),
    ("GC: allocation and collection", ("gc_", "m_malloc", "m_realloc", "m_free", "mp_obj_new_",
                                       "mp_obj_malloc")),
    ("floats (soft-float, boxing)", ("__aeabi_f", "__aeabi_i2f", "__aeabi_ui2f", "mp_obj_new_float",
                                     "mp_obj_float", "float_", "mp_obj_get_float", "__wrap___aeabi_f")),
    ("ints: small/big, division", ("mp_small_int", "mpz_", "mp_obj_int", "__aeabi_idiv",
                                   "__aeabi_uidiv", "__wrap___aeabi_idiv", "divmod")),
    ("attribute / name lookup", ("mp_load_", "mp_store_", "mp_map_lookup", "mp_obj_class_lookup",
                                 "mp_obj_instance_", "instance_", "mp_load_method",
                                 "mp_convert_member", "qstr_")),
    ("calls", ("mp_call_", "fun_", "mp_obj_fun", "mp_setup_code_state", "bound_meth",
               "mp_native_", "mp_obj_call")),
    ("struct / array / bytes", ("struct_", "array_", "mp_binary_", "bytearray", "bytes_",
                                "mp_obj_str", "memoryview")),
    ("hashes (sha256, HMAC)", ("mbedtls_sha256", "mbedtls_internal_sha256", "hashlib_")),
    ("USB / serial", ("tud_", "dcd_", "tu_", "usbd_", "mp_usbd", "mp_hal_stdout", "cdc",
                      "stdio_", "mp_stream")),
    ("interrupts, timers, scheduler", ("isr_", "mp_sched", "machine_timer", "soft_timer",
                                       "alarm_pool", "irq", "mp_handle_pending")),
)


def group_of(name):
    for g, prefixes in GROUPS:
        if name.startswith(prefixes):
            return g
    if name.startswith("ram:"):
        return "native code (.mpy @native/@viper)"
    if name == "bootrom":
        return "bootrom (division, float, memcpy helpers)"
    return "other firmware"


def profile(board="pico", beats=100, key=True, firmware=None, syms=None, device_args=(),
            beat_mem_checks=True):
    """Run the measured beat with the PC sampler on; returns by-function and by-group shares."""
    from becomingone.rp2040 import measure
    symtab = load_syms(syms)
    with tempfile.TemporaryDirectory(prefix="becomingone-prof-") as tmp:
        path = os.path.join(tmp, "prof.json")
        res = measure.measure(board=board, beats=beats, key=key, firmware=firmware,
                              device_args=device_args, profile=path, pow_hashes=0,
                              alloc_beats=0, heap_samples=0, beat_mem_checks=beat_mem_checks)
        with open(path) as f:
            hist = json.load(f)
    fns = attribute(hist, symtab)
    total = sum(c for _n, c in fns) or 1
    groups = {}
    for n, c in fns:
        g = group_of(n)
        groups[g] = groups.get(g, 0) + c
    return {"samples": total, "sample_every_instructions": 64, "measure": res,
            "functions": [(n, round(100.0 * c / total, 2)) for n, c in fns],
            "groups": sorted(((g, round(100.0 * c / total, 2)) for g, c in groups.items()),
                             key=lambda x: -x[1])}


def describe(r, top=30):
    m = r["measure"]
    lines = ["profile of %d beats on the emulated RP2040 (%s board): %d PC samples, one every "
             "64 instructions, over the timed beats (idle() and step())"
             % (m["beats"], m["board"], r["samples"]),
             "step() p50 %s us, p99 %s us" % (m["step_us"]["p50"], m["step_us"]["p99"]), "",
             "by kind of work:"]
    for g, pct in r["groups"]:
        lines.append("  %6.2f%%  %s" % (pct, g))
    lines += ["", "top %d functions:" % top]
    for n, pct in r["functions"][:top]:
        lines.append("  %6.2f%%  %s" % (pct, n))
    return lines
