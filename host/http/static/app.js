// BecomingONE live dashboard: one EventSource on /api/events, a `snapshot` event every
// http.sse_interval seconds (docs/HTTP.md); charts drawn on canvas (no library, no network).
"use strict";

const HISTORY = 240;                       // points kept per device (2 min at 0.5 s)
const DECISION_COLOURS = {NOOP: "#d1d5db", APPLY_BALANCE: "#60a5fa", APPLY_OPTIMIZE: "#34d399",
  ALERT: "#d97706", QUARANTINE: "#dc2626", INVALID: "#6b7280"};
const WINDOW_COLOURS = ["#2563eb", "#7c3aed", "#0d9488", "#b45309", "#be185d", "#4b5563"];
const history = new Map();                 // device id -> [{t, c, err, out, thr, dec}]
const cards = new Map();                   // device id -> card element
let lastSnap = null;

function $(id) { return document.getElementById(id); }
function text(el, v) { if (el && el.textContent !== String(v)) el.textContent = String(v); }
function fmt(v, digits) { return (v === null || v === undefined) ? "-" : Number(v).toFixed(digits); }
function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "-"; }
function duration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}
function decisionOf(tel) {
  if (!tel) return "-";
  return tel.quarantined ? "QUARANTINE" : tel.decision;
}

function card(dev) {
  let el = cards.get(dev.device_id);
  if (el) return el;
  el = $("device-card").content.firstElementChild.cloneNode(true);
  el.id = "device-" + dev.device_id;
  el.dataset.device = dev.device_id;
  text(el.querySelector(".id"), dev.device_id);
  const btn = el.querySelector("button.clear");
  btn.id = "clear-" + dev.device_id;
  btn.addEventListener("click", () => clearDevice(dev.device_id, el, btn));
  const main = $("devices");
  const after = [...cards.keys()].filter((d) => d > dev.device_id).sort((a, b) => a - b)[0];
  main.insertBefore(el, after === undefined ? null : cards.get(after));
  cards.set(dev.device_id, el);
  return el;
}

async function clearDevice(id, el, btn) {
  btn.disabled = true;
  const note = el.querySelector(".note");
  text(note, "sending CLEAR...");
  try {
    const r = await fetch("/api/devices/" + id + "/clear", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: "{}"});
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    text(note, body.sent ? "CLEAR sent at " + new Date().toLocaleTimeString() + " (ledger: action clear)"
                         : "CLEAR not sent: the device has no link right now");
    el.dataset.cleared = body.sent ? "sent" : "unsent";
  } catch (e) {
    text(note, "CLEAR failed: " + e.message);
  } finally {
    btn.disabled = false;
  }
}

function push(dev) {
  let h = history.get(dev.device_id);
  if (!h) { h = []; history.set(dev.device_id, h); }
  const t = dev.telemetry;
  if (!t) return h;
  const last = h[h.length - 1];
  if (last && last.beat === t.beat) return h;           // silent device: no new point
  h.push({t: Date.now() / 1000, beat: t.beat, c: t.coherence, err: t.pid_error, out: t.pid_output,
          thr: t.threat, dec: decisionOf(t)});
  if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
  return h;
}

function setupCanvas(cv) {
  // draw in CSS pixels on a backing store of the element's real size (sharp on any screen)
  const ratio = window.devicePixelRatio || 1;
  if (!cv.dataset.h) { cv.dataset.h = cv.height; cv.style.height = cv.height + "px"; }
  const W = cv.clientWidth || cv.width, H = Number(cv.dataset.h);
  if (cv.width !== Math.round(W * ratio) || cv.height !== Math.round(H * ratio)) {
    cv.width = Math.round(W * ratio);
    cv.height = Math.round(H * ratio);
  }
  const ctx = cv.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, W, H);
  return {ctx, W, H};
}

function line(ctx, pts, x, y, colour, width) {
  ctx.beginPath();
  ctx.strokeStyle = colour;
  ctx.lineWidth = width || 1.5;
  let started = false;
  pts.forEach((p, i) => {
    const v = y(p);
    if (v === null || Number.isNaN(v)) { started = false; return; }
    if (!started) { ctx.moveTo(x(i), v); started = true; } else ctx.lineTo(x(i), v);
  });
  ctx.stroke();
}

function drawCoherence(cv, h, dev, snap) {
  const {ctx, W, H} = setupCanvas(cv);
  const pad = 4, x = (i) => pad + (W - 2 * pad) * i / Math.max(1, HISTORY - 1);
  const yv = (v) => H - pad - (H - 2 * pad) * Math.max(0, Math.min(1.05, v)) / 1.05;
  ctx.setLineDash([4, 3]); ctx.strokeStyle = "#dc2626"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(pad, yv(snap.I_c)); ctx.lineTo(W - pad, yv(snap.I_c)); ctx.stroke();
  ctx.setLineDash([]);
  ctx.font = "10px sans-serif";
  (dev.windows || []).forEach((w, j) => {
    if (w.C === null) return;
    const col = WINDOW_COLOURS[j % WINDOW_COLOURS.length];
    ctx.strokeStyle = col; ctx.lineWidth = 1.2; ctx.setLineDash([2, 2]);
    ctx.beginPath(); ctx.moveTo(pad, yv(w.C)); ctx.lineTo(W - pad, yv(w.C)); ctx.stroke();
    ctx.setLineDash([]);
  });
  line(ctx, h, x, (p) => yv(p.c), "#111827", 1.8);
  ctx.fillStyle = "#dc2626"; ctx.fillText("I_c " + snap.I_c, pad + 2, yv(snap.I_c) - 2);
}

function legend(span, windows) {
  const key = windows.map((w) => w.window + ":" + fmt(w.C, 2)).join(",");
  if (span.dataset.key === key) return;
  span.dataset.key = key;
  span.replaceChildren(...windows.map((w, j) => {
    const s = document.createElement("span");
    s.style.color = WINDOW_COLOURS[j % WINDOW_COLOURS.length];
    s.textContent = " " + w.window + " s: " + fmt(w.C, 3);
    return s;
  }));
}

function drawControl(cv, h) {
  const {ctx, W, H} = setupCanvas(cv);
  const pad = 4, x = (i) => pad + (W - 2 * pad) * i / Math.max(1, HISTORY - 1);
  const y01 = (v) => H - pad - (H - 2 * pad) * Math.max(0, Math.min(1, v));
  const ypm = (v) => H / 2 - (H / 2 - pad) * Math.max(-1, Math.min(1, v));
  ctx.strokeStyle = "#e5e7eb"; ctx.beginPath(); ctx.moveTo(0, H / 2); ctx.lineTo(W, H / 2); ctx.stroke();
  line(ctx, h, x, (p) => ypm(p.err), "#7c3aed");
  line(ctx, h, x, (p) => y01(p.out), "#0891b2");
  line(ctx, h, x, (p) => y01(p.thr), "#dc2626");
}

function drawTimeline(cv, h) {
  const {ctx, W, H} = setupCanvas(cv);
  const step = (W - 8) / Math.max(1, HISTORY - 1);
  h.forEach((p, i) => {
    ctx.fillStyle = DECISION_COLOURS[p.dec] || "#d1d5db";
    const tall = p.dec === "ALERT" || p.dec === "QUARANTINE";
    ctx.fillRect(4 + i * step, tall ? 1 : H / 3, Math.ceil(step) + 0.5, tall ? H - 2 : H / 3);
  });
}

function renderDevice(dev, snap) {
  const el = card(dev);
  const h = push(dev);
  const t = dev.telemetry;
  const dec = decisionOf(t);
  el.classList.toggle("online", !!dev.online);
  el.classList.toggle("offline", !dev.online);
  for (const d of ["ALERT", "QUARANTINE"]) el.classList.toggle("d-" + d, dec === d);
  el.dataset.decision = dec;
  const badge = el.querySelector(".decision");
  badge.className = "decision " + dec;
  text(badge, dec);
  text(el.querySelector(".boot"), "boot " + dev.boot_id);
  text(el.querySelector(".v-coherence"), t ? fmt(t.coherence, 3) : "-");
  text(el.querySelector(".v-threat"), t ? fmt(t.threat, 3) : "-");
  text(el.querySelector(".v-pid-error"), t ? fmt(t.pid_error, 4) : "-");
  text(el.querySelector(".v-pid-output"), t ? fmt(t.pid_output, 3) : "-");
  text(el.querySelector(".v-lateness"), t ? t.lateness_us + " µs" : "-");
  text(el.querySelector(".v-beat"), t ? t.beat : "-");
  text(el.querySelector(".v-sync"), dev.sync ? fmt(dev.sync.C_sync, 3) + (dev.sync.collapsed ? " collapsed" : "") : "-");
  text(el.querySelector(".v-lost"), dev.lost);
  legend(el.querySelector(".legend-windows"), dev.windows || []);
  drawCoherence(el.querySelector("canvas.coherence"), h, dev, snap);
  drawControl(el.querySelector("canvas.control"), h);
  drawTimeline(el.querySelector("canvas.timeline"), h);
}

function renderDecisions(evs) {
  const body = $("decisions");
  const rows = evs.slice(-25).reverse();
  const key = rows.map((e) => e.index).join(",");
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  body.replaceChildren(...rows.map((e) => {
    const tr = document.createElement("tr");
    tr.className = e.event === "decision" ? (e.decision || "") : e.event;
    for (const v of [when(e.t), e.device, e.event, e.decision || "-", e.threat === null || e.threat === undefined ? "-" : fmt(e.threat, 3), e.index]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function renderMesh(mesh) {
  const peers = $("mesh-peers");
  if (!mesh || mesh.enabled === false) {
    text($("mesh-state"), "off");
    text($("mesh-tglobal"), "-");
    peers.replaceChildren();
    return;
  }
  text($("mesh-state"), (mesh.cell ? mesh.cell + " · " : "") + (mesh.running === false ? "starting" : "on")
       + (mesh.alive !== undefined ? " · " + mesh.alive + " alive" : ""));
  const tg = mesh.t_global;
  text($("mesh-tglobal"), Array.isArray(tg) ? "|T| " + Math.hypot(tg[0], tg[1]).toFixed(3) + " (" + fmt(tg[0], 3) + ", " + fmt(tg[1], 3) + ")" : "-");
  const view = mesh.members || mesh.view || mesh.peers || {};
  const items = Array.isArray(view) ? view.map((p) => [p.name || p.cell || JSON.stringify(p), p.state || ""])
    : Object.entries(view).map(([k, v]) => [k, Array.isArray(v) ? v[0] : (v && v.state) || v]);
  peers.replaceChildren(...items.map(([name, state]) => {
    const li = document.createElement("li");
    li.textContent = name + ": " + state;
    return li;
  }));
}

function render(snap) {
  lastSnap = snap;
  document.body.dataset.seq = snap.seq;
  text($("name"), snap.name || "");
  text($("updated"), "updated " + when(snap.t));
  const f = snap.frames || {};
  const rejected = Object.values(f.rejected || {}).reduce((a, b) => a + b, 0);
  text($("frames-received"), f.received); text($("frames-accepted"), f.accepted);
  text($("frames-rejected"), rejected); text($("frames-sent"), f.sent);
  text($("rejected-detail"), rejected ? "rejected by reason: " + Object.entries(f.rejected).map(([k, v]) => k + " " + v).join(", ") : "");
  text($("devices-seen"), snap.devices_seen); text($("devices-online"), snap.devices_online);
  text($("collapses"), snap.collapses ? snap.collapses.sync : "-");
  text($("uptime"), duration(snap.uptime_s));
  text($("ledger-size"), snap.ledger.size);
  const cp = snap.ledger.checkpoint;
  text($("checkpoint-size"), cp ? cp.size : "none yet");
  text($("checkpoint-time"), cp ? when(cp.timestamp) : "-");
  text($("checkpoint-root"), cp ? cp.root.slice(0, 16) + "…" : "-");
  renderMesh(snap.mesh);
  for (const dev of snap.devices) renderDevice(dev, snap);
  renderDecisions(snap.decisions || []);
}

function connect() {
  const conn = $("conn");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { conn.className = "conn on"; text(conn, "live"); });
  es.addEventListener("snapshot", (ev) => {
    conn.className = "conn on"; text(conn, "live");
    render(JSON.parse(ev.data));
  });
  es.addEventListener("error", () => { conn.className = "conn off"; text(conn, "reconnecting"); });
}

window.addEventListener("resize", () => { if (lastSnap) render(lastSnap); });
connect();
