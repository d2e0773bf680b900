#!/usr/bin/env node
// The project's emulated Raspberry Pi Pico: a MicroPython rp2 (RPI_PICO) .uf2 on rp2040js
// (Wokwi's RP2040 emulator), with the board's littlefs filesystem, flash writes that persist,
// watchdog / machine.reset() resets that keep the flash, ADC inputs and the USB CDC serial port
// either driven by a raw-REPL script runner or bridged to this process's stdin/stdout.
//
// usage: node rp2run.mjs --firmware FW.uf2 [--fs IMG] [--fs-out FILE] [--fs-offset 0xA0000]
//          (--script /board/path.py [--arg A]... | --code 'python source' | --serial | --repl)
//          [--adc CH:SPEC]... [--realtime] [--bootsel] [--wall-timeout S] [--emu-timeout S]
//          [--stats] [--profile FILE] [--busy-usb] [--raw] [-- ARGS...]
//
//   --script/--code  run through the raw REPL over USB CDC; the script's stdout goes to stdout
//                    (binary-safe with --raw), its traceback to stderr; exit status = the script's
//   --serial         no REPL driving: USB CDC bytes <-> stdin/stdout, raw (a serial port bridge;
//                    host/rp2040/board.py puts a pty on it). stdin EOF or SIGTERM ends the run;
//                    SIGUSR1 power-cycles the chip (flash kept, RAM and registers lost)
//   --repl           interactive: your terminal on the board's REPL (Ctrl-X quits)
//   --fs IMG         a littlefs image written at the filesystem offset (host/rp2040/fsimage.py)
//   --fs-out FILE    the filesystem region as the board left it, written when the run ends
//   --adc CH:SPEC    ADC channel CH (0..3 = GP26..29) input in counts (12-bit), e.g.
//                    0:mid=2048,hz=5,amp=400,noise=24,seed=1,spikes_at=5,spikes_dur=1.5,spikes_amp=1500
//   --realtime       never let emulated time run ahead of wall time (idle time is not
//                    fast-forwarded past the wall clock; default with --serial)
//   --bootsel        the BOOTSEL button is held down (rp2.bootsel_button() == 1); default released
//   --stats          one line "[rp2run] stats {json}" on stderr at the end
//   --profile FILE   sampled program counter histogram of the script (JSON), for profile.py;
//                    the script may gate it by printing "\x06PROF+" / "\x06PROF-" lines
//
// Exit status: the script's (0, n for sys.exit(n), 1 for an uncaught exception); 124 timeout;
// 125 emulator failure (bad firmware file, hard fault, core 1 started, protocol error).
//
// Faithfulness (what differs from a real Pico): flash has zero wait states (no XIP cache
// misses: a real Pico is as fast or slower); core 1 is not emulated; USB enumerates at once and
// the emulated host reads the CDC endpoint at once; flash erase/program are done by this runner
// at the bootrom's flash_range_erase / flash_range_program entry points (the firmware calls
// them through the ROM function table) and take their typical W25Q16JV times of emulated time.
import fs from 'fs';
import { Simulator, USBCDC, ConsoleLogger, LogLevel } from 'rp2040js';
import { bootromB1 } from './bootrom.mjs';

const EXIT_TIMEOUT = 124, EXIT_EMU = 125;
const FLASH_BYTES = 2 * 1024 * 1024;          // the Pico's W25Q16JV
const FS_OFFSET_DEFAULT = 0xa0000;            // RPI_PICO: 2 MiB - 1408 KiB storage
const ERASE_NS_PER_4K = 45e6, PROGRAM_NS_PER_PAGE = 0.4e6;   // W25Q16JV typical times
const UF2_FAMILY_RP2040 = 0xe48bff56;
const WD_REASON_TIMER = 1, WD_REASON_FORCE = 2;
const USB_SOF_RD = 0x48, USB_INTR_DEV_SOF = 1 << 17;
const SIO_GPIO_HI_IN = 0x008;

function die(msg) { process.stderr.write(`rp2run: ${msg}\n`); process.exit(EXIT_EMU); }

// ---- arguments --------------------------------------------------------------------------
const argv = process.argv.slice(2);
const opt = { arg: [], adc: [], stats: false, raw: false, repl: false, serial: false };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const next = () => { if (i + 1 >= argv.length) die(`${a} needs a value`); return argv[++i]; };
  const num = (v, what) => { const x = Number(v); if (!Number.isFinite(x) || x < 0) die(`${what} must be a number >= 0, got ${JSON.stringify(v)}`); return x; };
  switch (a) {
    case '--firmware': opt.firmware = next(); break;
    case '--fs': opt.fs = next(); break;
    case '--fs-out': opt.fsOut = next(); break;
    case '--fs-offset': opt.fsOffset = parseInt(next()); if (!(opt.fsOffset > 0 && opt.fsOffset < FLASH_BYTES)) die('--fs-offset must be inside the 2 MiB flash'); break;
    case '--script': opt.script = next(); break;
    case '--code': opt.code = next(); break;
    case '--arg': opt.arg.push(next()); break;
    case '--serial': opt.serial = true; break;
    case '--repl': opt.repl = true; break;
    case '--adc': opt.adc.push(next()); break;
    case '--realtime': opt.realtime = true; break;
    case '--bootsel': opt.bootsel = true; break;   // the BOOTSEL button held down
    case '--wall-timeout': opt.wallTimeout = num(next(), a); break;
    case '--emu-timeout': opt.emuTimeout = num(next(), a); break;
    case '--stats': opt.stats = true; break;
    case '--busy-usb': opt.busyUsb = true; break;
    case '--profile': opt.profile = next(); break;
    case '--raw': opt.raw = true; break;
    case '--': opt.arg.push(...argv.slice(i + 1)); i = argv.length; break;
    default: die(`unknown option ${a} (see the usage at the top of rp2run.mjs)`);
  }
}
if (!opt.firmware) die('--firmware FW.uf2 is required');
const modes = [opt.script !== undefined, opt.code !== undefined, opt.serial, opt.repl].filter(Boolean).length;
if (modes !== 1) die('give exactly one of --script PATH, --code SRC, --serial, --repl');
if (opt.realtime === undefined) opt.realtime = opt.serial || opt.repl;
const FS_OFFSET = opt.fsOffset ?? FS_OFFSET_DEFAULT;

// ---- the firmware: UF2 -> flash image ------------------------------------------------------
function loadUf2(path) {
  let buf;
  try { buf = fs.readFileSync(path); } catch (e) { die(`cannot read firmware ${path}: ${e.message}`); }
  if (buf.length === 0 || buf.length % 512) die(`${path} is not a UF2 file (size ${buf.length} is not a multiple of 512)`);
  const flash = new Uint8Array(FLASH_BYTES).fill(0xff);
  let blocks = 0; const families = new Set();
  for (let off = 0; off < buf.length; off += 512) {
    const b = buf.subarray(off, off + 512);
    const w = (o) => b.readUInt32LE(o);
    if (w(0) !== 0x0a324655 || w(4) !== 0x9e5d5157 || w(508) !== 0x0ab16f30) die(`${path} is not a UF2 file (bad magic in block at byte ${off})`);
    const flags = w(8), addr = w(12), size = w(16), family = w(28);
    if (flags & 1) continue;                                   // "not main flash"
    if (flags & 0x2000) { families.add(family); if (family !== UF2_FAMILY_RP2040) continue; }
    if (size > 476 || addr < 0x10000000 || addr + size > 0x10000000 + FLASH_BYTES) die(`${path}: block at byte ${off} writes outside the Pico's 2 MiB flash (address 0x${addr.toString(16)})`);
    flash.set(b.subarray(32, 32 + size), addr - 0x10000000);
    blocks++;
  }
  if (!blocks) {
    const fam = [...families].map((f) => '0x' + f.toString(16)).join(', ');
    die(`${path} holds no RP2040 blocks (families: ${fam || 'none'}); the emulator is an RP2040: use an RPI_PICO .uf2 (RP2350 / Pico 2 images do not run here)`);
  }
  return flash;
}

// ---- the bootrom, with the flash write entry points trapped -----------------------------------
const BKPT_ERASE = 0xe0, BKPT_PROGRAM = 0xe1;
const ROM = new Uint32Array(bootromB1);
const romFn = {};
{
  const b8 = new Uint8Array(ROM.buffer);
  const u16 = (a) => b8[a] | (b8[a + 1] << 8);
  for (let p = u16(0x14); u16(p); p += 4) romFn[String.fromCharCode(u16(p) & 0xff, u16(p) >> 8)] = u16(p + 2) & ~1;
  if (romFn.RE === undefined || romFn.RP === undefined) die('bootrom has no flash_range_erase/flash_range_program');
  const put16 = (a, v) => { b8[a] = v & 0xff; b8[a + 1] = v >> 8; };
  put16(romFn.RE, 0xbe00 | BKPT_ERASE);    // BKPT #0xe0 at flash_range_erase
  put16(romFn.RP, 0xbe00 | BKPT_PROGRAM);  // BKPT #0xe1 at flash_range_program
}

// ---- ADC inputs ----------------------------------------------------------------------------
function adcSource(spec) {
  const m = /^([0-3]):(.*)$/.exec(spec);
  if (!m) die(`--adc ${JSON.stringify(spec)}: expected CH:NAME=VALUE,... with CH 0..3 (GP26..GP29)`);
  const p = { mid: 2048, hz: 0, amp: 0, noise: 0, seed: 1, spikes_at: -1, spikes_dur: 0, spikes_amp: 0, spikes_every: 0.025 };
  for (const item of m[2].split(',').filter(Boolean)) {
    const [k, v] = item.split('=');
    if (!(k in p)) die(`--adc item ${JSON.stringify(k)} unknown (allowed: ${Object.keys(p).join(', ')})`);
    const x = Number(v);
    if (v === undefined || !Number.isFinite(x)) die(`--adc ${k}=${JSON.stringify(v)}: not a number`);
    p[k] = x;
  }
  let rng = (p.seed >>> 0) || 1;
  const rand = () => { rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0; return rng / 4294967296; };
  // a deterministic function of emulated time: a sine, white noise, and a train of spikes (an
  // impacting machine: one every spikes_every s for spikes_dur s from spikes_at s)
  return (t) => {
    let v = p.mid + p.amp * Math.sin(2 * Math.PI * p.hz * t) + p.noise * (2 * rand() - 1);
    if (p.spikes_at >= 0 && t >= p.spikes_at && t < p.spikes_at + p.spikes_dur) {
      const k = (t - p.spikes_at) / p.spikes_every;
      if (k - Math.floor(k) < 0.002 / p.spikes_every) v += p.spikes_amp;   // 2 ms wide
    }
    return Math.max(0, Math.min(4095, Math.round(v)));
  };
}
const adcSources = {};
for (const s of opt.adc) adcSources[Number(s[0])] = adcSource(s);

// ---- the chip ------------------------------------------------------------------------------
const wallStart = process.hrtime.bigint();
const wallSeconds = () => Number(process.hrtime.bigint() - wallStart) / 1e9;
let emuBefore = 0;            // emulated seconds of chips before the last reset
let chip = null, stopped = false, resetRequest = null;
const events = { resets: 0, watchdog: 0, flash_erase_bytes: 0, flash_program_bytes: 0 };

let sioMisses = 0;
const sioMiss = () => {
  if (++sioMisses === 1000) finish(EXIT_EMU, 'firmware waits on the SIO FIFO (core 1 / _thread), which rp2040js does not emulate');
};
const baseLog = new ConsoleLogger(LogLevel.Error);
const logger = {};
for (const lvl of ['debug', 'info', 'warn', 'error']) {
  logger[lvl] = (tag, msg) => {
    if (typeof msg === 'string' && msg.includes('invalid SIO address')) return sioMiss();
    baseLog[lvl].call(baseLog, tag, msg);
  };
}
{
  const cw = console.warn;   // rp2040js' SIO reports to console.warn directly
  console.warn = (...a) => { if (typeof a[0] === 'string' && a[0].includes('invalid SIO address')) return sioMiss(); cw(...a); };
}

class Chip {
  constructor(flash, keep) {
    this.sim = new Simulator();
    const mcu = this.mcu = this.sim.rp2040;
    mcu.loadBootrom(ROM);                 // (resets the core and erases the model's flash)
    mcu.logger = logger;
    mcu.flash.set(flash, 0);
    mcu.onBreak = (code) => this.onBreak(code);
    this.clock = this.sim.clock;
    const wd = this.wd = mcu.peripherals[0x40058];
    if (keep) { wd.scratchData.set(keep.scratch); wd.reason = keep.reason; }
    wd.onWatchdogTrigger = () => {         // a watchdog timeout or machine.reset() (CTRL.TRIGGER)
      // the chip resets: stop the watchdog's counter (rp2040js would re-arm its alarm at the
      // same instant forever) and leave the run loop to reset
      wd.alarm.enable = false;
      wd.timer.enable = false;
      if (!resetRequest) resetRequest = { reason: wd.reason === WD_REASON_FORCE ? 'force' : 'watchdog', keepScratch: true };
    };
    // The BOOTSEL button: MicroPython's rp2.bootsel_button() reads the QSPI SS pin through SIO
    // GPIO_HI_IN (bit 1; low = pressed). rp2040js leaves the pin low, i.e. pressed, and a
    // firmware that checks the button (ours does at boot: safe mode) would think it is held.
    // Released unless --bootsel.
    const sio = mcu.sio, sioRead = sio.readUint32.bind(sio);
    sio.readUint32 = (off) => {
      const v = sioRead(off);
      return off === SIO_GPIO_HI_IN ? (opt.bootsel ? v & ~2 : v | 2) : v;
    };
    const adc = mcu.adc, read = adc.onADCRead;
    adc.onADCRead = (ch) => {
      const src = adcSources[ch];
      if (src) adc.channelValues[ch] = src(this.clock.nanos / 1e9 + emuBefore);
      read(ch);
    };
    this.cdc = new USBCDC(mcu.usbCtrl);
    this.pendingRead = null;
    if (!opt.busyUsb) {
      // rp2040js' USBCDC answers every OUT transfer the firmware arms at once, with 0 bytes when
      // there is nothing to send; the firmware re-arms at once and TinyUSB's IRQ + task eat ~40 %
      // of the cycles. A real host only sends OUT packets when it has data: hold the read.
      const cdcRead = mcu.usbCtrl.onEndpointRead;
      mcu.usbCtrl.onEndpointRead = (endpoint, size) => {
        if (endpoint === this.cdc.outEndpoint && this.cdc.txFIFO.empty) { this.pendingRead = { endpoint, size, cdcRead }; return; }
        cdcRead(endpoint, size);
      };
    }
    mcu.core.PC = 0x10000000;              // boot2 at the start of flash, as the bootrom does
  }

  startSof() {
    // USB start-of-frame every 1 ms once the host has configured the device. rp2040js does not
    // raise the device SOF interrupt; MicroPython needs it: after the host sets DTR it flushes
    // what was written before the port was open (boot banner, a firmware's first frames) from
    // its SOF callback. INTR.DEV_SOF is cleared by reading SOF_RD, as on the silicon.
    const usb = this.mcu.usbCtrl;
    if (this.sof) return;
    const read = usb.readUint32.bind(usb);
    usb.readUint32 = (off) => {
      if (off === USB_SOF_RD && usb.intRaw & USB_INTR_DEV_SOF) { usb.intRaw &= ~USB_INTR_DEV_SOF; usb.checkInterrupts(); }
      return read(off);
    };
    this.sof = this.clock.createAlarm(() => {
      usb.sofFrameNumber = (usb.sofFrameNumber + 1) & 0x7ff;
      if (usb.intEnable & USB_INTR_DEV_SOF) { usb.intRaw |= USB_INTR_DEV_SOF; usb.checkInterrupts(); }
      this.sof.schedule(1e6);
    });
    this.sof.schedule(1e6);
  }

  onBreak(code) {
    const core = this.mcu.core, r = core.registers;
    const at = (core.PC - 2) & ~1;
    if (code === BKPT_ERASE && at === romFn.RE) {            // flash_range_erase(addr, count, block_size, cmd)
      const addr = r[0] >>> 0, count = r[1] >>> 0;
      if (addr % 4096 || count % 4096 || addr + count > FLASH_BYTES) return finish(EXIT_EMU, `flash_range_erase(0x${addr.toString(16)}, ${count}) is not 4 KiB aligned or outside the flash`);
      this.mcu.flash.fill(0xff, addr, addr + count);
      events.flash_erase_bytes += count;
      this.clock.tick(ERASE_NS_PER_4K * count / 4096);
      core.PC = core.LR & ~1;
      return;
    }
    if (code === BKPT_PROGRAM && at === romFn.RP) {          // flash_range_program(addr, data, count)
      const addr = r[0] >>> 0, data = r[1] >>> 0, count = r[2] >>> 0;
      if (addr % 256 || count % 256 || addr + count > FLASH_BYTES) return finish(EXIT_EMU, `flash_range_program(0x${addr.toString(16)}, ${count}) is not 256-byte aligned or outside the flash`);
      const f = this.mcu.flash;
      for (let k = 0; k < count; k++) f[addr + k] &= this.mcu.readUint8(data + k);   // NOR: program clears bits
      events.flash_program_bytes += count;
      this.clock.tick(PROGRAM_NS_PER_PAGE * count / 256);
      core.PC = core.LR & ~1;
      return;
    }
    finish(EXIT_EMU, `breakpoint/hard fault (bkpt ${code}) at PC=0x${at.toString(16)}`);
  }

  get emuSeconds() { return this.clock.nanos / 1e9; }
}

function emuSeconds() { return emuBefore + (chip ? chip.emuSeconds : 0); }

function bootChip(flash, keep) {
  chip = new Chip(flash, keep);
  chip.cdc.onDeviceConnected = () => onConnected();
  chip.cdc.onSerialData = (value) => onSerialData(value);
}

function doReset(req) {
  // A reset keeps the flash (and, for watchdog / machine.reset(), the watchdog's scratch
  // registers and reset reason, as the silicon does); RAM, core and peripherals start over.
  const at = emuSeconds();
  events.resets++;
  if (req.reason === 'watchdog') events.watchdog++;
  process.stderr.write(`[rp2run] event reset reason=${req.reason} emu=${at.toFixed(3)}\n`);
  if (!opt.serial && !opt.repl) return finish(EXIT_EMU, `the board reset (${req.reason}) while the script ran`);
  const flash = chip.mcu.flash.slice(0, FLASH_BYTES);
  const keep = req.keepScratch ? { scratch: chip.wd.scratchData.slice(), reason: req.reason === 'force' ? WD_REASON_FORCE : WD_REASON_TIMER } : null;
  chip.sim.stop();
  emuBefore = at;
  inQueue.length = 0;
  bootChip(flash, keep);
}

// ---- USB CDC traffic ---------------------------------------------------------------------------
const inQueue = [];
const send = (s) => { for (const ch of Buffer.from(s, 'latin1')) inQueue.push(ch); };
let promptAt = null, runStartEmu = null, runStartWall = null;
let state = 'boot';            // boot -> raw -> ok -> stdout -> end -> done   (script modes)
let acc = '';
let exitCode = null;
const SENTINEL = /\x06RC:(-?\d+)\r\n/;
const TB_MARK = '\x06TB\r\n';
const PROF_GATE = /\x06PROF([+-])\r*\n/;   // (print() on the board sends \r\n)
let profOn = true;

function driver() {
  // Runs the script as __main__ with sys.argv = [script, args...]; every exception is caught so
  // that stdout (which may carry binary frames) always ends with the status sentinel.
  const tail = `except SystemExit as _e:\n _a=_e.args[0] if _e.args else 0\n` +
    ` _c=0 if _a is None else (_a if isinstance(_a,int) else (print(_a) or 1))\n` +
    `except BaseException as _e:\n print('\\x06TB')\n sys.print_exception(_e)\n _c=1\n` +
    `try:\n import micropython\n micropython.kbd_intr(3)\nexcept Exception:\n pass\n` +
    `print('\\x06RC:%d' % _c)\n`;
  if (opt.code !== undefined) return `import sys\n_c=0\ntry:\n exec(${JSON.stringify(opt.code)},{'__name__':'__main__'})\n` + tail;
  const s = opt.script;
  const d = s.lastIndexOf('/') > 0 ? s.slice(0, s.lastIndexOf('/')) : '';
  return `import sys\nsys.argv[:]=${JSON.stringify([s, ...opt.arg])}\n` +
    (d ? `sys.path.insert(0,${JSON.stringify(d)})\n` : '') +
    `_c=0\ntry:\n exec(compile(open(${JSON.stringify(s)}).read(),${JSON.stringify(s)},'exec'),{'__name__':'__main__','__file__':${JSON.stringify(s)}})\n` + tail;
}

function out(stream, text) {
  if (!opt.raw) text = text.replace(/\r\n/g, '\n');
  stream.write(Buffer.from(text, 'latin1'));
}

function onConnected() {
  chip.startSof();
  if (opt.serial) return;
  if (opt.repl) { send('\r\n'); return; }
  send('\x03\x03\r\n');     // interrupt a main.py if one runs, then ask for a prompt
}

let hold = '';
function onSerialData(value) {
  const text = Buffer.from(value).toString('latin1');
  if (opt.serial) { process.stdout.write(Buffer.from(value)); return; }
  if (opt.repl) { process.stdout.write(text); return; }
  acc += text;
  switch (state) {
    case 'boot':
      if (acc.includes('>>> ')) { promptAt = { emu: emuSeconds(), wall: wallSeconds() }; state = 'raw'; acc = ''; send('\x01'); }
      break;
    case 'raw':
      if (acc.includes('raw REPL; CTRL-B to exit\r\n>')) {
        state = 'ok'; acc = '';
        runStartEmu = emuSeconds(); runStartWall = wallSeconds();
        send(driver() + '\x04');
      }
      break;
    case 'ok':
      if (acc.startsWith('OK')) { const rest = acc.slice(2); acc = ''; state = 'stdout'; stdoutData(rest); }
      else if (acc.length >= 2) { process.stderr.write(`rp2run: raw REPL said ${JSON.stringify(acc.slice(0, 200))}\n`); finish(EXIT_EMU, 'protocol error'); }
      break;
    case 'stdout': { const t = acc; acc = ''; stdoutData(t); break; }
    case 'end': {
      // after the sentinel: the raw REPL's "\x04" (end of output), its (empty) error output, "\x04>"
      if (/\x04[^]*\x04>?/.test(acc)) {
        const err = acc.slice(acc.indexOf('\x04') + 1, acc.lastIndexOf('\x04'));
        if (err.trim()) out(process.stderr, err);
        finish(err.trim() ? 1 : exitCode, 'script finished');
      }
      break;
    }
  }
}

let inTraceback = false;
function stdoutData(t) {
  // Binary-safe: the script's stdout ends at the status sentinel, nothing else is special but
  // the profile gates "\x06PROF+\r\n" (drop the samples so far, sample from here) and
  // "\x06PROF-\r\n" (stop sampling), which a script prints around the part to profile.
  // The last bytes that could be the start of a sentinel are held back until more arrive.
  t = hold + t; hold = '';
  for (let g; (g = PROF_GATE.exec(t)); ) {
    if (prof && g[1] === '+') { prof.clear(); profOn = true; } else if (prof) profOn = false;
    t = t.slice(0, g.index) + t.slice(g.index + g[0].length);
  }
  const m = SENTINEL.exec(t);
  let body = m ? t.slice(0, m.index) : t;
  if (!m) {
    const k = body.lastIndexOf('\x06');
    if (k >= 0 && body.length - k < 12) { hold = body.slice(k); body = body.slice(0, k); }
  }
  if (!inTraceback) {
    const tb = body.indexOf(TB_MARK);
    if (tb >= 0) { out(process.stdout, body.slice(0, tb)); body = body.slice(tb + TB_MARK.length); inTraceback = true; }
    else if (body) out(process.stdout, body);
  }
  if (inTraceback && body) out(process.stderr, body);
  if (m) {
    exitCode = parseInt(m[1]);
    state = 'end'; acc = t.slice(m.index + m[0].length);
    onSerialData(new Uint8Array(0));
  }
}

// ---- stdin ---------------------------------------------------------------------------------
process.stdout.on('error', () => finish(0, 'stdout closed'));   // the reader went away (EPIPE)
if (opt.serial) {
  process.stdin.on('data', (chunk) => { for (const b of chunk) inQueue.push(b); });
  process.stdin.on('end', () => finish(0, 'stdin closed'));
  process.on('SIGTERM', () => finish(0, 'SIGTERM'));
  process.on('SIGINT', () => finish(0, 'SIGINT'));
  process.on('SIGUSR1', () => { if (!resetRequest) resetRequest = { reason: 'power', keepScratch: false }; });
} else if (opt.repl) {
  if (process.stdin.isTTY) process.stdin.setRawMode(true);
  process.stdin.on('data', (chunk) => {
    if (chunk[0] === 24) return finish(0, 'ctrl-x');
    for (const b of chunk) inQueue.push(b);
  });
} else {
  process.on('SIGTERM', () => finish(EXIT_TIMEOUT, 'SIGTERM'));
}

// ---- the end ---------------------------------------------------------------------------------
const prof = opt.profile ? new Map() : null;
function finish(code, why) {
  if (stopped) return;
  stopped = true;
  if (code >= EXIT_TIMEOUT) process.stderr.write(`[rp2run] ${why}\n`);
  if (opt.stats) {
    const w = wallSeconds(), e = emuSeconds();
    const cu = process.cpuUsage();
    const runEmu = runStartEmu == null ? 0 : e - runStartEmu;
    const runWall = runStartWall == null ? 0 : w - runStartWall;
    const st = {
      why, exit: code, boot_to_prompt_emu_s: promptAt ? +promptAt.emu.toFixed(4) : null,
      boot_to_prompt_wall_s: promptAt ? +promptAt.wall.toFixed(3) : null,
      script_emu_s: +runEmu.toFixed(4), script_wall_s: +runWall.toFixed(3),
      total_emu_s: +e.toFixed(4), total_wall_s: +w.toFixed(3), cpu_s: +((cu.user + cu.system) / 1e6).toFixed(3),
      wall_per_emu: runEmu ? +(runWall / runEmu).toFixed(3) : null,
      cycles: chip ? chip.mcu.core.cycles : 0, clk_sys_hz: chip ? chip.mcu.clkSys : 0, ...events,
    };
    process.stderr.write(`[rp2run] stats ${JSON.stringify(st)}\n`);
  }
  try {
    if (prof) fs.writeFileSync(opt.profile, JSON.stringify([...prof.entries()]));
    if (opt.fsOut && chip) fs.writeFileSync(opt.fsOut, chip.mcu.flash.subarray(FS_OFFSET, FLASH_BYTES));
  } catch (e) {
    process.stderr.write(`rp2run: ${e.message}\n`);
    code = EXIT_EMU;
  }
  if (chip) chip.sim.stop();
  process.exitCode = code;
  const done = () => process.exit(code);
  // let stdout drain, but never wait on a reader that has gone away
  if (process.stdout.writableLength) { process.stdout.once('drain', done); setTimeout(done, 2000); } else setImmediate(done);
}

// ---- run loop: like Simulator.execute, at the emulated clk_sys, feeding the CDC FIFO --------
function run() {
  const c = chip, mcu = c.mcu, core = mcu.core, clock = c.clock;
  const cycleNanos = 1e9 / mcu.clkSys;
  const sampling = prof && profOn && runStartEmu != null;
  let n = 0, waitNs = 0;
  for (let i = 0; i < 500000 && !stopped && !resetRequest; i++) {
    if (core.waiting) {
      let ns = clock.nanosToNextAlarm;
      if (opt.realtime) {
        const ahead = emuSeconds() + ns / 1e9 - wallSeconds();
        if (ahead > 0.001) { waitNs = ahead * 1e9; break; }   // do not run ahead of the wall clock
      }
      clock.tick(ns);
      i += ns / cycleNanos;
    } else {
      if (sampling && (++n & 63) === 0) { const pc = core.PC; prof.set(pc, (prof.get(pc) || 0) + 1); }
      clock.tick(core.executeInstruction() * cycleNanos);
    }
  }
  if (stopped) return;
  if (resetRequest) { const r = resetRequest; resetRequest = null; doReset(r); if (stopped) return; return setImmediate(run); }
  const cdc = c.cdc;
  while (inQueue.length && !cdc.txFIFO.full) cdc.sendSerialByte(inQueue.shift());
  if (c.pendingRead && !cdc.txFIFO.empty) { const p = c.pendingRead; c.pendingRead = null; p.cdcRead(p.endpoint, p.size); }
  if (opt.wallTimeout && wallSeconds() > opt.wallTimeout) return finish(EXIT_TIMEOUT, `wall-clock timeout ${opt.wallTimeout}s (state ${state})`);
  if (opt.emuTimeout && emuSeconds() > opt.emuTimeout) return finish(EXIT_TIMEOUT, `emulated timeout ${opt.emuTimeout}s (state ${state})`);
  if (waitNs > 0) setTimeout(run, Math.min(20, Math.max(1, Math.floor(waitNs / 1e6))));
  else setImmediate(run);
}

let flash = loadUf2(opt.firmware);
if (opt.fs) {
  let img;
  try { img = fs.readFileSync(opt.fs); } catch (e) { die(`cannot read filesystem image ${opt.fs}: ${e.message}`); }
  if (FS_OFFSET + img.length > FLASH_BYTES) die(`filesystem image ${opt.fs} (${img.length} bytes) does not fit the flash after offset 0x${FS_OFFSET.toString(16)} (${FLASH_BYTES - FS_OFFSET} bytes)`);
  flash.set(img, FS_OFFSET);
}
bootChip(flash, null);
flash = null;
run();
