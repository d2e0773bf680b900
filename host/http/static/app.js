// BecomingONE dashboard (docs/HTTP.md, "Dashboard"). Live: one EventSource on /api/events (a
// `snapshot` every http.sse_interval s). History: /api/devices/N/history from the coordinator's
// memory for the chosen time range, refreshed every HISTORY_REFRESH_S and extended by the live
// snapshots in between. Charts: uPlot (vendored, static/uPlot.LICENSE.txt) with UTC time axes,
// y scales, a value tooltip, drag-to-zoom, and ALERT / QUARANTINE bands and CLEAR markers.
// /snapshot (or ?static=1) renders once from /api/snapshot with no live stream, then sets
// <body data-ready="1">: for printing and headless screenshot tools.
"use strict";

const STATIC = location.pathname === "/snapshot" || new URLSearchParams(location.search).has("static");
const HISTORY_REFRESH_S = 15;
const DECISIONS = ["NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE"];
const BAND = {3: "rgba(217, 119, 6, 0.18)", 4: "rgba(220, 38, 38, 0.20)"};
const WINDOW_STYLE = [["#2563eb", [6, 3]], ["#7c3aed", [2, 2]], ["#0d9488", [10, 4]],
  ["#b45309", [4, 2, 1, 2]], ["#be185d", [1, 3]], ["#4b5563", [8, 2, 2, 2]]];
const devices = new Map();   // id -> {el, hist, plots, fetched}
let lastSnap = null;
let rangeS = Number(new URLSearchParams(location.search).get("range")) || 600;

function $(id) { return document.getElementById(id); }
function text(el, v) { if (el && el.textContent !== String(v)) el.textContent = String(v); }
function fmt(v, digits) { return (v === null || v === undefined) ? "-" : Number(v).toFixed(digits); }
function utc(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC") : "-"; }
function epoch(iso) { return iso ? Date.parse(iso) / 1000 : null; }
function hhmmss(sec) { return new Date(sec * 1000).toISOString().slice(11, 19); }
function duration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
}

// ------------------------------------------------------------------ history per device
function emptyHist() {
  return {t: [], coherence: [], threat: [], pid_error: [], pid_output: [], decision: [],
          master: new Map(), events: []};
}

async function fetchHistory(id) {
  const r = await fetch("/api/devices/" + id + "/history?since=-" + rangeS + "s&points=1200",
                        {credentials: "same-origin"});
  if (!r.ok) throw new Error((await r.json()).error || r.statusText);
  const h = await r.json();
  const out = emptyHist();
  const tel = h.telemetry;
  out.t = tel.t_epoch_s.slice();
  for (const k of ["coherence", "threat", "pid_error", "pid_output", "decision"]) out[k] = tel[k].slice();
  for (const m of h.master) out.master.set(m.window, {t: m.t_epoch_s.slice(), C: m.C.slice()});
  out.events = h.events;
  return out;
}

function appendLive(d, dev, snapT) {
  // between two history fetches: the snapshot's last TELEMETRY values become a new point
  const h = d.hist;
  if (dev.beat === null || dev.beat === undefined || d.lastBeat === dev.beat) return;
  d.lastBeat = dev.beat;
  h.t.push(snapT);
  h.coherence.push(dev.coherence); h.threat.push(dev.threat);
  h.pid_error.push(dev.pid_error); h.pid_output.push(dev.pid_output);
  h.decision.push(DECISIONS.indexOf(dev.decision));
  for (const w of dev.windows || []) {
    if (w.C === null) continue;
    let m = h.master.get(w.window);
    if (!m) { m = {t: [], C: []}; h.master.set(w.window, m); }
    m.t.push(snapT); m.C.push(w.C);
  }
  trim(h, snapT - rangeS);
}

function trim(h, from) {
  let i = 0;
  while (i < h.t.length && h.t[i] < from) i++;
  if (i) for (const k of ["t", "coherence", "threat", "pid_error", "pid_output", "decision"]) h[k].splice(0, i);
  for (const m of h.master.values()) {
    let j = 0;
    while (j < m.t.length && m.t[j] < from) j++;
    if (j) { m.t.splice(0, j); m.C.splice(0, j); }
  }
}

// ------------------------------------------------------------------ chart plugins
function decisionBands(getHist) {
  // ALERT / QUARANTINE (latched included) shaded across the plot, under the series
  return {hooks: {drawAxes: [(u) => {
    const h = getHist();
    if (!h || !h.t.length) return;
    const {ctx} = u, {top, height} = u.bbox;
    ctx.save();
    let start = 0;
    for (let i = 1; i <= h.t.length; i++) {
      if (i < h.t.length && h.decision[i] === h.decision[start]) continue;
      const code = h.decision[start];
      if (BAND[code]) {
        const t1 = i < h.t.length ? h.t[i] : h.t[h.t.length - 1];
        const x0 = u.valToPos(h.t[start], "x", true), x1 = u.valToPos(t1, "x", true);
        ctx.fillStyle = BAND[code];
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      }
      start = i;
    }
    ctx.restore();
  }]}};
}

function clearMarkers(getHist) {
  return {hooks: {draw: [(u) => {
    const h = getHist();
    if (!h) return;
    const {ctx} = u, {top, height} = u.bbox;
    ctx.save();
    ctx.strokeStyle = "#15803d"; ctx.fillStyle = "#15803d"; ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([5 * devicePixelRatio, 3 * devicePixelRatio]);
    ctx.font = (10 * devicePixelRatio) + "px sans-serif";
    for (const e of h.events) {
      if (e.event !== "clear" && e.event !== "quarantine_cleared") continue;
      const t = epoch(e.time);
      if (t < u.scales.x.min || t > u.scales.x.max) continue;
      const x = u.valToPos(t, "x", true);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
      ctx.fillText(e.event === "clear" ? "CLEAR" : "released", x + 3 * devicePixelRatio, top + 11 * devicePixelRatio);
    }
    ctx.restore();
  }]}};
}

function threshold(value, label, colour) {
  // a dashed horizontal level with its label above the line, at the right end
  return {hooks: {draw: [(u) => {
    const v = value();
    if (v === null || v === undefined) return;
    const {ctx} = u, {left, width} = u.bbox, y = u.valToPos(v, "y", true);
    ctx.save();
    ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = devicePixelRatio;
    ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
    ctx.font = (10 * devicePixelRatio) + "px sans-serif"; ctx.textAlign = "right";
    ctx.fillText(label + " " + v, left + width - 4 * devicePixelRatio, y - 4 * devicePixelRatio);
    ctx.restore();
  }]}};
}

function tooltip(getHist) {
  const tip = $("tooltip");
  return {hooks: {
    setCursor: [(u) => {
      const i = u.cursor.idx;
      if (i === null || i === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
      const lines = [hhmmss(u.data[0][i]) + " UTC"];
      u.series.forEach((s, k) => {
        if (k === 0 || !s.show) return;
        const v = u.data[k][i];
        if (v !== null && v !== undefined) lines.push(s.label + ": " + Number(v).toFixed(3));
      });
      const h = getHist();
      if (h && h.t.length) {
        const t = u.data[0][i];
        let j = 0;
        while (j + 1 < h.t.length && h.t[j + 1] <= t) j++;
        lines.push("decision: " + (DECISIONS[h.decision[j]] || "-"));
      }
      tip.textContent = lines.join("\n");
      const r = u.over.getBoundingClientRect();
      tip.style.left = (window.scrollX + r.left + u.cursor.left + 14) + "px";
      tip.style.top = (window.scrollY + r.top + u.cursor.top + 14) + "px";
      tip.hidden = false;
    }],
    destroy: [() => { tip.hidden = true; }],
  }};
}

function timeAxis() {
  return {label: "time (UTC)", labelSize: 16, size: 34, space: 70,
          values: (u, vals) => vals.map((v) => hhmmss(v))};
}

function coherenceSeries(windows) {
  const s = [{}, {label: "Emissary C (device)", stroke: "#111827", width: 2, spanGaps: true}];
  windows.forEach((w, j) => {
    const [colour, dash] = WINDOW_STYLE[j % WINDOW_STYLE.length];
    s.push({label: "Master " + w, stroke: colour, width: 1.6, dash, spanGaps: true});
  });
  return s;
}

function makePlots(d) {
  const el = d.el;
  const width = Math.max(320, el.querySelector(".charts").clientWidth);
  for (const p of Object.values(d.plots || {})) p.destroy();
  const windows = [...d.hist.master.keys()].sort((a, b) => parseFloat(a) - parseFloat(b));
  d.windows = windows.join(",");
  const get = () => d.hist;
  const common = {width, height: 190, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
                  cursor: {drag: {x: true, y: false}, sync: {key: "devices"}},
                  legend: {show: true, live: false}};
  const coh = new uPlot(Object.assign({}, common, {
    scales: {x: {time: true}, y: {range: [0, 1.02]}},
    axes: [timeAxis(), {label: "coherence C (0..1)", labelSize: 16, size: 44}],
    series: coherenceSeries(windows),
    plugins: [decisionBands(get), clearMarkers(get),
              threshold(() => lastSnap && lastSnap.I_c, "I_c", "#dc2626"), tooltip(get)],
  }), [[]].concat(windows.map(() => [])).concat([[]]), el.querySelector(".chart.coherence"));
  const ctl = new uPlot(Object.assign({}, common, {
    scales: {x: {time: true}, y: {range: [-1.02, 1.02]}},
    axes: [timeAxis(), {label: "error, duty, threat", labelSize: 16, size: 44}],
    series: [{}, {label: "PID error", stroke: "#7c3aed", width: 1.4},
             {label: "PID output", stroke: "#0891b2", width: 1.4},
             {label: "threat", stroke: "#dc2626", width: 2}],
    plugins: [decisionBands(get), clearMarkers(get), threshold(() => 0.6, "ALERT", "#d97706"),
              threshold(() => 0.85, "QUARANTINE", "#dc2626"), tooltip(get)],
  }), [[], [], [], []], el.querySelector(".chart.control"));
  d.plots = {coh, ctl};
  d.width = width;
  // what the charts show, for tests and tools: axis labels and series
  el.dataset.axes = [coh, ctl].flatMap((p) => p.axes.map((a) => a.label)).join("|");
}

function chartData(d) {
  const h = d.hist;
  const windows = d.windows ? d.windows.split(",") : [];
  // every series on the telemetry's time base; a Master window takes its value at or before t
  const cols = [h.t, h.coherence];
  for (const w of windows) {
    const m = h.master.get(w) || {t: [], C: []};
    const out = new Array(h.t.length).fill(null);
    let j = 0;
    for (let i = 0; i < h.t.length; i++) {
      while (j + 1 < m.t.length && m.t[j + 1] <= h.t[i]) j++;
      if (m.t.length && m.t[j] <= h.t[i]) out[i] = m.C[j];
    }
    cols.push(out);
  }
  return {coh: cols, ctl: [h.t, h.pid_error, h.pid_output, h.threat]};
}

function drawCharts(d) {
  if (!d.hist || typeof uPlot === "undefined") return;
  const windows = [...d.hist.master.keys()].sort((a, b) => parseFloat(a) - parseFloat(b)).join(",");
  const width = Math.max(320, d.el.querySelector(".charts").clientWidth);
  if (!d.plots || windows !== d.windows || Math.abs(width - d.width) > 4) makePlots(d);
  const data = chartData(d);
  const now = lastSnap ? epoch(lastSnap.time) : Date.now() / 1000;
  // the chosen range, or less when the history is younger than it (a new device, a new cell)
  const first = d.hist.t.length ? d.hist.t[0] : now;
  const from = Math.max(now - rangeS, Math.min(first, now - 30) - 2);
  for (const [name, p] of Object.entries(d.plots)) {
    p.setData(data[name], false);
    if (!d.zoomed) p.setScale("x", {min: from, max: now});
    else p.redraw(false);
  }
}

// ------------------------------------------------------------------ cards
function card(dev) {
  let d = devices.get(dev.device_id);
  if (d) return d;
  const el = $("device-card").content.firstElementChild.cloneNode(true);
  el.id = "device-" + dev.device_id;
  el.dataset.device = dev.device_id;
  text(el.querySelector(".id"), dev.device_id);
  const btn = el.querySelector("button.clear");
  btn.id = "clear-" + dev.device_id;
  if (STATIC) btn.disabled = true;
  btn.addEventListener("click", () => clearDevice(dev.device_id, el, btn));
  const main = $("devices");
  const after = [...devices.keys()].filter((x) => x > dev.device_id).sort((a, b) => a - b)[0];
  main.insertBefore(el, after === undefined ? null : devices.get(after).el);
  d = {el, hist: emptyHist(), plots: null, fetched: 0, lastBeat: null, zoomed: false};
  el.addEventListener("dblclick", () => { d.zoomed = false; drawCharts(d); });
  el.addEventListener("mouseup", () => {
    if (d.plots && d.plots.coh.select.width > 0) d.zoomed = true;
  });
  devices.set(dev.device_id, d);
  return d;
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
    text(note, body.sent ? "CLEAR sent at " + new Date().toISOString().slice(11, 19) + " UTC (ledger: action clear)"
                         : "CLEAR not sent: the device has no link right now");
    el.dataset.cleared = body.sent ? "sent" : "unsent";
  } catch (e) {
    text(note, "CLEAR failed: " + e.message);
  } finally {
    btn.disabled = false;
  }
}

function renderDevice(dev, snap) {
  const d = card(dev);
  const el = d.el;
  const dec = dev.decision || "-";
  el.classList.toggle("online", !!dev.online);
  el.classList.toggle("offline", !dev.online);
  for (const x of ["ALERT", "QUARANTINE"]) el.classList.toggle("d-" + x, dec === x);
  el.dataset.decision = dec;
  const badge = el.querySelector(".decision");
  badge.className = "decision " + dec;
  text(badge, dec);
  text(el.querySelector(".boot"), "boot " + dev.boot_id + (dev.board ? " · " + dev.board : ""));
  text(el.querySelector(".v-coherence"), fmt(dev.coherence, 3));
  text(el.querySelector(".v-threat"), fmt(dev.threat, 3));
  text(el.querySelector(".v-pid-error"), fmt(dev.pid_error, 4));
  text(el.querySelector(".v-pid-output"), fmt(dev.pid_output, 3));
  text(el.querySelector(".v-lateness"), dev.lateness_s === null ? "-" : fmt(dev.lateness_s * 1e3, 3) + " ms");
  text(el.querySelector(".v-beat"), dev.beat === null ? "-" : dev.beat);
  text(el.querySelector(".v-sync"), dev.sync ? fmt(dev.sync.C_sync, 3) + (dev.sync.collapsed ? " collapsed" : "") : "-");
  text(el.querySelector(".v-lost"), dev.lost);
  text(el.querySelector(".v-windows"), (dev.windows || []).map((w) => w.window + " " + fmt(w.C, 3)
       + (w.fill !== null && w.fill < 0.999 ? " (" + Math.round(w.fill * 100) + "% filled)" : "")).join(", ") || "-");
  if (!STATIC) appendLive(d, dev, epoch(snap.time));
  return d;
}

async function refreshHistory(d, id, force) {
  const now = Date.now() / 1000;
  if (!force && now - d.fetched < HISTORY_REFRESH_S) return;
  d.fetched = now;
  try {
    d.hist = await fetchHistory(id);
    d.lastBeat = null;
    text(d.el.querySelector(".note"), d.el.querySelector(".note").textContent.startsWith("history:") ? "" : d.el.querySelector(".note").textContent);
  } catch (e) {
    text(d.el.querySelector(".note"), "history: " + e.message);
  }
  drawCharts(d);
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
    for (const v of [utc(e.time), e.device, e.event, e.decision || "-", e.threat === null || e.threat === undefined ? "-" : fmt(e.threat, 3), e.index]) {
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
  text($("updated"), "updated " + utc(snap.time));
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
  text($("checkpoint-time"), cp ? utc(cp.time) : "-");
  text($("checkpoint-root"), cp ? cp.root.slice(0, 16) + "…" : "-");
  renderMesh(snap.mesh);
  const jobs = [];
  for (const dev of snap.devices) {
    const d = renderDevice(dev, snap);
    jobs.push(refreshHistory(d, dev.device_id, STATIC));
  }
  renderDecisions(snap.decisions || []);
  return Promise.all(jobs);
}

function redrawAll() { for (const d of devices.values()) drawCharts(d); }

function connect() {
  const conn = $("conn");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { conn.className = "conn on"; text(conn, "live"); });
  es.addEventListener("snapshot", (ev) => {
    conn.className = "conn on"; text(conn, "live");
    render(JSON.parse(ev.data));
    redrawAll();
  });
  es.addEventListener("error", () => { conn.className = "conn off"; text(conn, "reconnecting"); });
}

async function staticPage() {
  const conn = $("conn");
  conn.className = "conn static"; text(conn, "static snapshot");
  $("snapshot-link").hidden = true;
  const r = await fetch("/api/snapshot", {credentials: "same-origin"});
  const snap = await r.json();
  await render(snap);
  redrawAll();
  document.body.dataset.ready = "1";       // headless screenshot tools wait for this
}

if ([...$("range").options].some((o) => Number(o.value) === rangeS)) $("range").value = String(rangeS);
$("range").addEventListener("change", (ev) => {
  rangeS = Number(ev.target.value);
  for (const [id, d] of devices) { d.zoomed = false; refreshHistory(d, id, true); }
});
window.addEventListener("resize", () => redrawAll());
window.addEventListener("load", () => { if (STATIC) staticPage(); else connect(); });
