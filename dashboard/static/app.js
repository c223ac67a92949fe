/* Lifeline control-room page: live alert board, city map, sensor detail, status bar.
 * Plain JS modules, no dependencies (control rooms are air-gapped).
 * State flows one way: websocket snapshot/events -> `alerts` map -> batched DOM render (rAF)
 * -> board rows, level counts, map colours, district risk, detail panel.
 */

import {
  I18N, DOMAINS, LEVELS, LEVEL_RANK, domainName, fmtAge, fmtForecast, fmtNum, fmtTime, forecastTitle,
  getLang, labelOr, levelLabel, levelName, levelRoman, pad2, setLang, t
} from "./i18n.js";
import { $, el, fillSelect, setAttr, setText, toast } from "./dom.js";
import {
  api, get, getToken, probeAuth, setToken, storedToken, takeTokenFromUrl, whenUnauthorized
} from "./api.js";
import { CityMap } from "./map.js";
import { SensorDetail, closeOnEscape } from "./detail.js";
import { StatusBar } from "./status.js";
import * as perf from "./perf.js";

const STORE = {
  operator: "lifeline.operator",  // localStorage
  muted: "lifeline.muted",
  dispatchTo: "lifeline.dispatchTo",
  view: "lifeline.view",
  mapMode: "lifeline.mapMode"
};
const STATES = ["new", "acknowledged", "dispatched", "active", "cleared"];
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const AGE_TICK_MS = 2000;
const FLASH_MS = 6000;
const FLASH_MAX = 6;             // rows flashing at once; in a flood the newest ones flash
const FLASH_PHASE_MS = 450;      // flashing rows blink by a class toggled at this period, not a
                                 // CSS animation: two repaints a second instead of sixty
const FRESH_MAX_RUNNING = 10;    // "just changed" highlights animating at once
const TITLE_MIN_MS = 1000;
const BEEP_MIN_GAP_MS = 1500;
const FRESH_MAX_PER_FRAME = 12;
// Under a flood of events the page re-renders at most this often (event-driven renders only;
// operator actions render at the next frame). Ten updates a second is plenty for a wall
// screen and keeps the browser's per-frame style/layout/paint work bounded.
const RENDER_MIN_MS = 100;
const RED_TOAST_MS = 8000;
const SENSORS_REFRESH_MS = 30000;
const SENSORS_REFRESH_LARGE_MS = 120000;

function lsGet(key, dflt) {
  try { const v = localStorage.getItem(key); return v === null ? dflt : v; } catch (e) { return dflt; }
}
function lsSet(key, val) { try { localStorage.setItem(key, val); } catch (e) { /* private mode */ } }

// ---------------------------------------------------------------- state
const alerts = new Map();     // id -> alert (open alerts only)
const rows = new Map();       // id -> row element (cached, may be detached when filtered out)
const dirty = new Set();      // ids whose row must be (re)rendered
const flashUntil = new Map(); // id -> epoch ms until which the row flashes
const freshIds = new Set();   // ids of rows that get a short "just changed" highlight
const touchedSensors = new Set();  // sensors whose alerts changed since the last render
const knownDomains = new Set(DOMAINS);
const sensors = new Map();    // id -> catalogue entry from GET /api/sensors
const byAsset = new Map();    // asset -> [sensor]
const districtOf = new Map(); // sensor id -> district id
let pendingRed = [];          // new red alerts not yet announced (coalesced per render)
let redToast = null;
let flashTimer = null;
let flashPhase = false;
let freshRunning = 0;
let titleAt = 0;
let titleTimer = null;
const reduceMotion = !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);          // the toast announcing red alerts, updated in place during a flood
let domainsChanged = false;
let needsResort = true;
let seqDirty = true;
let alertsChanged = true;
let rafPending = false;
let renderTimer = null;
let lastRenderAt = -Infinity;
let haveSnapshot = false;
let lastSeq = null;
let lastLiveAt = null;        // wall clock of the last message received while connected
const filters = { domain: "", level: "", district: "", owner: "", state: "" };
let stopped = true;           // true while we have no usable token
let beepCount = 0;
let renderCount = 0;
let eventsApplied = 0;
let duplicatesIgnored = 0;
let snapshotSeq = null;       // seq of the last snapshot; events applied since then are counted
let eventsSinceSnapshot = 0;
let selectedSensor = null;
let catalogueLoaded = false;
let catalogueTimer = null;
const timings = { boardReady: null, mapReady: null, catalogue: null };

let map = null;
let detail = null;
let statusBar = null;

// ---------------------------------------------------------------- token handling
function showTokenBox(reasonKey) {
  const box = $("#token-box");
  const err = $("#token-error");
  if (reasonKey) { err.textContent = t(reasonKey); err.hidden = false; err.dataset.reason = reasonKey; }
  else { err.hidden = true; err.textContent = ""; delete err.dataset.reason; }
  box.hidden = false;
  document.body.classList.add("need-token");
  $("#token-cancel").hidden = !storedToken();
  const input = $("#token-input");
  input.value = "";
  setTimeout(() => input.focus(), 0);
}
function hideTokenBox() {
  $("#token-box").hidden = true;
  document.body.classList.remove("need-token");
}

function authRejected() {
  // The server said 401: stop everything and ask for a token.
  setToken(null);
  stopSocket();
  statusBar.stop();
  showTokenBox("token_rejected");
  setConn("disconnected");
}

function start() {
  const token = takeTokenFromUrl();
  if (!token) {
    showTokenBox(null);
    setConn("disconnected");
    return;
  }
  // A bad token shows up as a failed websocket handshake, which is then checked over REST (probeAuth).
  hideTokenBox();
  stopped = false;
  connect();
  loadCatalogue();
  statusBar.start();
}

// ---------------------------------------------------------------- websocket
let ws = null;
let wsOpenedAt = 0;
let wsGotMessage = false;
let backoff = BACKOFF_MIN_MS;
let reconnectTimer = null;
let attempts = 0;
let everConnected = false;
let connState = "connecting";

function wsUrl() {
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams();
  if (getToken()) params.set("token", getToken());
  if (lastSeq !== null) params.set("since", String(lastSeq));
  const q = params.toString();
  return proto + "//" + window.location.host + "/ws/alerts" + (q ? "?" + q : "");
}

function connect() {
  if (stopped) return;
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  attempts += 1;
  setConn("connecting");
  let sock;
  try {
    sock = new WebSocket(wsUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  ws = sock;
  wsOpenedAt = 0;
  wsGotMessage = false;
  sock.onopen = () => {
    if (ws !== sock) return;
    wsOpenedAt = Date.now();
    attempts = 0;
    everConnected = true;
    lastLiveAt = Date.now();
    setConn("connected");
    if (!catalogueLoaded) loadCatalogue();
  };
  sock.onmessage = (ev) => {
    if (ws !== sock) return;
    wsGotMessage = true;
    lastLiveAt = Date.now();
    const started = performance.now();
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { console.warn("lifeline: non-JSON websocket message ignored"); return; }
    handleMessage(msg);
    perf.record("message", performance.now() - started);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    const opened = wsOpenedAt > 0;
    const lived = opened ? Date.now() - wsOpenedAt : 0;
    if (wsGotMessage || lived >= 5000) backoff = BACKOFF_MIN_MS;
    if (stopped) return;
    setConn("disconnected");
    if (ev.code === 4401 || ev.code === 1008 || ev.code === 4403 || !opened) {
      // Possibly an auth problem (browsers hide the handshake status): ask the REST API.
      probeAuth().then((p) => {
        if (stopped) return;
        if (p === "unauthorized") authRejected();
        else scheduleReconnect();
      });
    } else {
      scheduleReconnect();
    }
  };
  sock.onerror = () => { /* onclose follows and handles it */ };
}

function scheduleReconnect() {
  if (stopped || reconnectTimer) return;
  const delay = backoff;
  backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
  setConn("disconnected");
  reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, delay);
}

function stopSocket() {
  stopped = true;
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (ws) {
    const s = ws;
    ws = null;
    try { s.close(); } catch (e) { /* ignore */ }
  }
}

function handleMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "snapshot") {
    applySnapshot(msg);
  } else if (msg.type === "event") {
    const seq = Number(msg.seq);
    if (lastSeq !== null && Number.isFinite(seq) && seq <= lastSeq) { duplicatesIgnored += 1; return; } // already seen
    if (Number.isFinite(seq)) lastSeq = seq;
    eventsApplied += 1;
    eventsSinceSnapshot += 1;
    applyEvent(msg.event, msg.alert);
    seqDirty = true;
  } else if (msg.error) {
    console.warn("lifeline: server error on websocket:", msg.error);
  }
}

function applySnapshot(msg) {
  const wasLoaded = haveSnapshot;
  const before = new Set(alerts.keys());
  for (const [id, a] of alerts) { dirty.add(id); touchedSensors.add(a.sensor); }
  alerts.clear();
  const list = Array.isArray(msg.alerts) ? msg.alerts : [];
  for (const a of list) {
    if (!a || !a.id || a.workflow === "closed") continue;
    alerts.set(a.id, a);
    dirty.add(a.id);
    touchedSensors.add(a.sensor);
    if (a.domain && !knownDomains.has(a.domain)) domainsChanged = true;
    // After a reset, red alerts we had never seen are new to this operator.
    if (wasLoaded && !before.has(a.id) && a.level === "red") announceRed(a);
  }
  const seq = Number(msg.seq);
  lastSeq = Number.isFinite(seq) ? seq : lastSeq;
  snapshotSeq = lastSeq;
  eventsSinceSnapshot = 0;
  haveSnapshot = true;
  if (timings.boardReady === null) timings.boardReady = performance.now();
  needsResort = true;
  alertsChanged = true;
  seqDirty = true;
  schedule();
}

function applyEvent(event, a) {
  if (!a || !a.id) return;
  const prev = alerts.get(a.id);
  if (event === "closed" || a.workflow === "closed") {
    alerts.delete(a.id);
    flashUntil.delete(a.id);
  } else {
    alerts.set(a.id, a);
    const becameRed = a.level === "red" && a.condition !== "cleared" &&
      (event === "raised" || event === "reactivated" || (event === "escalated" && (!prev || prev.level !== "red")) ||
       (!prev && event !== "cleared"));
    if (becameRed) announceRed(a);
    else if (event === "raised" || event === "escalated") freshIds.add(a.id);
    if (a.domain && !knownDomains.has(a.domain)) domainsChanged = true;
  }
  if (!prev || prev.level !== a.level || prev.raised_at !== a.raised_at || !alerts.has(a.id) ||
      (filters.state && (prev.workflow !== a.workflow || prev.condition !== a.condition))) needsResort = true;
  dirty.add(a.id);
  touchedSensors.add(a.sensor);
  alertsChanged = true;
  schedule();
}

function announceRed(a) {
  flashUntil.delete(a.id);
  flashUntil.set(a.id, Date.now() + FLASH_MS);
  // Keep only the newest few flashing: a flood of flashing rows says nothing and costs paint time.
  while (flashUntil.size > FLASH_MAX) {
    const oldest = flashUntil.keys().next().value;
    flashUntil.delete(oldest);
    const row = rows.get(oldest);
    if (row) { row.classList.remove("flash", "flash-on"); delete row.dataset.flash; }
  }
  pendingRed.push(a);
}

// ---------------------------------------------------------------- sound
let audioCtx = null;
let muted = lsGet(STORE.muted, "false") === "true";

let audioUnavailable = false;
function getAudio() {
  if (!audioCtx && !audioUnavailable) {
    const AC = window.AudioContext || window.webkitAudioContext;
    try { audioCtx = AC ? new AC() : null; } catch (e) { audioCtx = null; }
    audioUnavailable = !audioCtx;
  }
  return audioCtx;
}
function unlockAudio() {
  const ctx = getAudio();  // called from user gestures only, so the context may start
  if (ctx && ctx.state === "suspended") ctx.resume().then(updateSoundStatus, () => {});
  setTimeout(updateSoundStatus, 0);
}
let lastBeepAt = 0;
function beep() {
  if (muted) return;
  const now = Date.now();
  if (now - lastBeepAt < BEEP_MIN_GAP_MS) return;
  lastBeepAt = now;
  const ctx = getAudio();
  if (!ctx) return;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  beepCount += 1;
  document.body.dataset.beeps = String(beepCount);
  const t0 = ctx.currentTime + 0.02;
  // Two short two-tone pulses: unmistakable but not harsh.
  const tones = [[0, 988], [0.16, 740], [0.36, 988], [0.52, 740]];
  for (const [dt, freq] of tones) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t0 + dt);
    gain.gain.exponentialRampToValueAtTime(0.18, t0 + dt + 0.015);
    gain.gain.setValueAtTime(0.18, t0 + dt + 0.12);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + dt + 0.15);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + dt);
    osc.stop(t0 + dt + 0.16);
  }
  updateSoundStatus();
}
function flushAlarms() {
  if (!pendingRed.length) return;
  const list = pendingRed;
  pendingRed = [];
  beep();
  const a = list[list.length - 1];
  // One red toast at a time: during a flood it counts up instead of stacking new toasts.
  if (redToast && redToast.node.isConnected && !redToast.node.classList.contains("leaving")) {
    redToast.count += list.length;
    clearTimeout(redToast.timer);
  } else {
    redToast = { count: list.length, node: null, timer: null };
    redToast.node = toast("", "red", 0);
  }
  const r = redToast;
  setText(r.node, r.count === 1
    ? t("new_red", { id: a.id, asset: a.asset || a.sensor || "", message: a.message || "" })
    : t("new_red_many", { n: r.count, id: a.id, asset: a.asset || a.sensor || "" }));
  r.timer = setTimeout(() => { r.node.classList.add("leaving"); setTimeout(() => r.node.remove(), 400); }, RED_TOAST_MS);
}
function updateSoundStatus() {
  const btn = $("#mute-toggle");
  btn.setAttribute("aria-pressed", muted ? "true" : "false");
  btn.dataset.muted = muted ? "true" : "false";
  const label = muted ? t("sound_off") : t("sound_on");
  if (btn.dataset.label !== label || btn.childElementCount === 0) {
    btn.dataset.label = label;
    // Own inline icon (no emoji: control-room machines often lack an emoji font).
    btn.innerHTML = '<svg class="icon" viewBox="0 0 16 16" aria-hidden="true"><path d="M2 6h3l4-3v10l-4-3H2z" fill="currentColor"/>' +
      (muted ? '<path d="M11 5.5l4 5M15 5.5l-4 5" stroke="currentColor" stroke-width="1.6" fill="none"/>'
             : '<path d="M11 5.5a3.5 3.5 0 0 1 0 5M12.8 3.6a6 6 0 0 1 0 8.8" stroke="currentColor" stroke-width="1.4" fill="none"/>') +
      '</svg>';
    btn.append(el("span", "tool-label", label));
  }
  btn.title = t("sound_title");
  const st = $("#status-sound");
  const activated = !!(navigator.userActivation && navigator.userActivation.hasBeenActive);
  const blocked = !muted && (audioCtx ? audioCtx.state !== "running" : !activated);
  st.textContent = muted ? t("sound_status_off") : blocked ? t("sound_blocked") : t("sound_status_on");
  st.classList.toggle("warn", !!blocked);
}

// ---------------------------------------------------------------- catalogue and map
async function loadCatalogue() {
  clearTimeout(catalogueTimer);
  const started = performance.now();
  const [base, list] = await Promise.all([get("/api/map"), get("/api/sensors")]);
  if (!list.ok) {
    if (list.status !== 401) catalogueTimer = setTimeout(loadCatalogue, 5000);
    return;
  }
  if (base.ok) map.setBase(base.data);
  const note = $("#map-note");
  note.hidden = !!(base.ok && base.data.districts);
  setText(note, t("map_no_base"));
  setCatalogue(list.data);
  catalogueLoaded = true;
  timings.catalogue = performance.now() - started;
  if (timings.mapReady === null) timings.mapReady = performance.now();
  scheduleSensorRefresh();
}

function setCatalogue(list) {
  sensors.clear();
  byAsset.clear();
  districtOf.clear();
  const hasBase = map.districtIds().length > 0;
  for (const s of list) {
    sensors.set(s.id, s);
    if (s.asset) { if (!byAsset.has(s.asset)) byAsset.set(s.asset, []); byAsset.get(s.asset).push(s); }
    const loc = s.location || {};
    const district = s.district || (hasBase ? map.districtAt(Number(loc.lon), Number(loc.lat)) : null);
    if (district) districtOf.set(s.id, district);
  }
  map.setSensors(list);
  applyMapFilter();
  fillFilters();
  // Rows show the catalogue's unit and district, and the filters use it: re-render every row.
  for (const a of alerts.values()) { touchedSensors.add(a.sensor); dirty.add(a.id); }
  alertsChanged = true;
  needsResort = true;
  schedule();
}

function scheduleSensorRefresh() {
  clearTimeout(catalogueTimer);
  const every = sensors.size > 3000 ? SENSORS_REFRESH_LARGE_MS : SENSORS_REFRESH_MS;
  catalogueTimer = setTimeout(async () => {
    if (!document.hidden && !stopped) {
      const res = await get("/api/sensors");
      if (res.ok) {
        if (res.data.length !== sensors.size || res.data.some((s) => !sensors.has(s.id))) setCatalogue(res.data);
        else { for (const s of res.data) sensors.set(s.id, s); map.updateStatus(res.data); }
      }
    }
    scheduleSensorRefresh();
  }, every);
}

function districtLabel(id) { return map ? map.districtName(id) : id; }

function sensorMatches(s) {
  if (filters.domain && s.domain !== filters.domain) return false;
  if (filters.owner && s.owner !== filters.owner) return false;
  if (filters.district && districtOf.get(s.id) !== filters.district) return false;
  return true;
}
function applyMapFilter() {
  const any = filters.domain || filters.owner || filters.district;
  map.setFilter(any ? sensorMatches : null);
  updateMapCount();
}
function updateMapCount() {
  const n = sensors.size;
  const shown = map.shownCount;
  let text = n ? (shown === n ? t("map_count", { n }) : t("map_count_filtered", { shown, n })) : "";
  const alerted = Number($("#map").dataset.alertedSensors || 0);
  if (alerted) text += " · " + t("map_alerted", { n: alerted });
  setText($("#map-count"), text);
}

function updateMapLevels() {
  const worst = new Map();
  const risk = new Map();
  for (const a of alerts.values()) {
    const cur = worst.get(a.sensor);
    if (cur === undefined || LEVEL_RANK[a.level] < LEVEL_RANK[cur]) worst.set(a.sensor, a.level);
    const d = districtOf.get(a.sensor);
    if (d) {
      let r = risk.get(d);
      if (!r) { r = { red: 0, orange: 0, yellow: 0, blue: 0, total: 0 }; risk.set(d, r); }
      if (r[a.level] !== undefined) r[a.level] += 1;
      r.total += 1;
    }
  }
  setAttr($("#map"), "data-alerted-sensors", worst.size);
  setAttr($("#map"), "data-risk", Array.from(risk, ([d, r]) => d + ":" + (LEVELS.find((lv) => r[lv]) || "none")).sort().join(" "));
  map.setLevels(worst);
  map.setRisk(risk);
  updateMapCount();
}

function renderLegend() {
  const box = $("#map-legend");
  box.replaceChildren();
  const risk = map.mode === "risk";
  box.append(el("div", "legend-title", risk ? t("legend_risk_title") : t("legend_title")));
  for (const lv of LEVELS) {
    const item = el("span", "legend-item");
    const sw = el("span", "legend-swatch " + (risk ? "area" : "dot"));
    sw.dataset.level = lv;
    item.append(sw, el("span", null, levelName(lv)));
    box.append(item);
  }
  if (risk) {
    const item = el("span", "legend-item wide");
    const sw = el("span", "legend-swatch area");
    sw.dataset.level = "none";
    item.append(sw, el("span", null, t("legend_risk_none")));
    box.append(item);
  } else {
    for (const [cls, key] of [["normal", "legend_normal"], ["silent", "legend_silent"], ["cluster", "legend_cluster"]]) {
      const item = el("span", "legend-item" + (cls === "cluster" ? " wide" : ""));
      item.append(el("span", "legend-swatch " + cls), el("span", null, t(key)));
      box.append(item);
    }
  }
}

function setMapMode(mode) {
  map.setMode(mode);
  lsSet(STORE.mapMode, map.mode);
  for (const b of document.querySelectorAll("#map-mode .seg-btn")) {
    b.classList.toggle("active", b.dataset.mode === map.mode);
    setAttr(b, "aria-pressed", b.dataset.mode === map.mode ? "true" : "false");
  }
  renderLegend();
}

function setView(view) {
  const v = ["board", "split", "map"].includes(view) ? view : "split";
  document.body.dataset.view = v;
  lsSet(STORE.view, v);
  for (const b of document.querySelectorAll("#view-switch .seg-btn")) {
    b.classList.toggle("active", b.dataset.view === v);
    setAttr(b, "aria-pressed", b.dataset.view === v ? "true" : "false");
  }
}

// ---------------------------------------------------------------- sensor detail
function openSensor(id) {
  if (!id) return;
  selectedSensor = id;
  detail.open(id);
  map.select(id);
  map.focus(id);
  document.body.classList.add("detail-open");
  markSelectedRows();
}
function closeSensor() {
  selectedSensor = null;
  detail.close();
  map.select(null);
  document.body.classList.remove("detail-open");
  markSelectedRows();
}
function markSelectedRows() {
  for (const row of rows.values()) row.classList.toggle("selected", !!row._alert && row._alert.sensor === selectedSensor);
}
function openAlertsOf(sensorId) {
  const out = [];
  for (const a of alerts.values()) if (a.sensor === sensorId) out.push(a);
  return out;
}

// ---------------------------------------------------------------- rendering
function schedule(urgent) {
  if (rafPending) return;
  const wait = urgent ? 0 : lastRenderAt + RENDER_MIN_MS - performance.now();
  if (wait > 0) {
    if (!renderTimer) renderTimer = setTimeout(() => { renderTimer = null; requestRender(); }, wait);
    return;
  }
  requestRender();
}
function requestRender() {
  if (rafPending) return;
  clearTimeout(renderTimer);
  renderTimer = null;
  rafPending = true;
  requestAnimationFrame(render);
}

function visible(a) {
  if (filters.domain && a.domain !== filters.domain) return false;
  if (filters.level && a.level !== filters.level) return false;
  if (filters.owner && a.owner !== filters.owner) return false;
  if (filters.district && districtOf.get(a.sensor) !== filters.district) return false;
  if (filters.state) {
    if (filters.state === "active" || filters.state === "cleared") { if (a.condition !== filters.state) return false; }
    else if (a.workflow !== filters.state) return false;
  }
  return true;
}

function compareAlerts(a, b) {
  const ra = LEVEL_RANK[a.level] === undefined ? 9 : LEVEL_RANK[a.level];
  const rb = LEVEL_RANK[b.level] === undefined ? 9 : LEVEL_RANK[b.level];
  if (ra !== rb) return ra - rb;
  const ta = Number(a.raised_at) || 0, tb = Number(b.raised_at) || 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function render() {
  rafPending = false;
  renderCount += 1;
  lastRenderAt = performance.now();
  try { renderNow(); } finally { perf.record("render", performance.now() - lastRenderAt); }
}

function renderNow() {
  if (domainsChanged) { domainsChanged = false; fillFilters(); }
  const board = $("#board");
  let changed = false;
  for (const id of dirty) {
    const a = alerts.get(id);
    let row = rows.get(id);
    if (!a) {
      if (row) { row.remove(); rows.delete(id); }
      changed = true;
      continue;
    }
    if (!row) { row = buildRow(a); rows.set(id, row); }
    updateRow(row, a);
    changed = true;
  }
  dirty.clear();
  if (freshIds.size) {
    // Short "just changed" highlight; the Web Animations API restarts it without forcing a reflow.
    // In a flood of changes highlighting everything says nothing and costs paint time: skip it.
    if (freshIds.size > FRESH_MAX_PER_FRAME) freshIds.clear();
    for (const id of freshIds) {
      const row = rows.get(id);
      if (!row || !row.isConnected || flashUntil.has(id) || typeof row.animate !== "function" || reduceMotion) continue;
      if (row._fresh) row._fresh.cancel();
      else if (freshRunning >= FRESH_MAX_RUNNING) continue;
      else freshRunning += 1;
      const anim = row.animate([{ backgroundColor: "rgba(79, 195, 247, 0.30)" }, {}], { duration: 2200, easing: "ease-out" });
      row._fresh = anim;
      const done = () => { if (row._fresh === anim) { row._fresh = null; freshRunning -= 1; } };
      anim.onfinish = done;
      anim.oncancel = done;
    }
    freshIds.clear();
  }
  if (seqDirty) { seqDirty = false; updateSeqDisplay(); }
  if (changed || needsResort) {
    const wanted = [];
    for (const a of alerts.values()) if (visible(a)) wanted.push(a);
    wanted.sort(compareAlerts);
    const wantedRows = wanted.map((a) => rows.get(a.id) || (() => {
      const r = buildRow(a); rows.set(a.id, r); updateRow(r, a); return r;
    })());
    reorder(board, wantedRows);
    needsResort = false;
    updateCounts(wanted.length);
  }
  if (alertsChanged) {
    alertsChanged = false;
    updateMapLevels();
    if (selectedSensor && touchedSensors.has(selectedSensor)) { detail.alertChanged(); detail.paint(); }
    touchedSensors.clear();
  }
  updateFlashes();
  flushAlarms();
}

// Keyed reorder that moves as few rows as possible (rows outside the longest already-ordered
// run are moved), so a single escalation moves one row and open inline forms keep focus.
function reorder(board, wantedRows) {
  const want = new Set(wantedRows);
  for (const child of Array.from(board.children)) if (!want.has(child)) child.remove();
  const pos = new Map();
  wantedRows.forEach((r, i) => pos.set(r, i));
  const current = Array.from(board.children);
  const idx = current.map((r) => pos.get(r));
  const keep = new Set(lisNodes(current, idx));
  const active = document.activeElement;
  let moved = false;
  let next = null;
  for (let i = wantedRows.length - 1; i >= 0; i--) {
    const r = wantedRows[i];
    if (!keep.has(r)) {
      if (r.contains(active)) moved = true;
      board.insertBefore(r, next);
    }
    next = r;
  }
  if (moved && active && typeof active.focus === "function") active.focus({ preventScroll: true });
}
function lisNodes(nodes, idx) {
  const tails = [], tailIdx = [], prev = new Array(idx.length).fill(-1);
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    let lo = 0, hi = tails.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (tails[mid] < v) lo = mid + 1; else hi = mid; }
    tails[lo] = v; tailIdx[lo] = i;
    prev[i] = lo > 0 ? tailIdx[lo - 1] : -1;
  }
  const out = [];
  let k = tailIdx.length ? tailIdx[tailIdx.length - 1] : -1;
  while (k >= 0) { out.push(nodes[k]); k = prev[k]; }
  return out;
}

function buildRow(a) {
  const row = el("div", "alert-row");
  row.setAttribute("role", "row");
  row.dataset.testid = "alert-row";
  row.dataset.alertId = a.id;
  const main = el("div", "row-main");
  const c = {};  // cached references to the parts updateRow touches

  const cLevel = el("div", "cell c-level");
  const badge = el("span", "level-badge");
  c.levelName = el("span", "level-name");
  c.levelRoman = el("span", "level-roman");
  badge.append(c.levelName, c.levelRoman);
  c.peak = el("span", "peak-badge");
  c.peak.hidden = true;
  cLevel.append(badge, c.peak);

  const cAge = el("div", "cell c-age");
  c.age = el("span", "age");
  c.forecast = el("span", "forecast");
  c.forecast.hidden = true;
  cAge.append(c.age, c.forecast);

  const cAsset = el("div", "cell c-asset");
  const line1 = el("div", "asset-line");
  c.domain = el("span", "domain-tag");
  c.asset = el("span", "asset");
  c.sensor = el("span", "sensor");
  c.district = el("span", "district");
  line1.append(c.domain, c.asset, c.sensor, c.district);
  const line2 = el("div", "msg-line");
  c.message = el("span", "message");
  c.alertId = el("span", "alert-id");
  line2.append(c.message, c.alertId);
  cAsset.append(line1, line2);

  c.valueCell = el("div", "cell c-value");
  const vline = el("div", "value-line");
  c.value = el("span", "value");
  c.unit = el("span", "unit");
  vline.append(c.value, c.unit);
  c.threshold = el("span", "threshold");
  c.valueCell.append(vline, c.threshold);

  const cState = el("div", "cell c-state");
  c.cond = el("span", "cond-pill");
  c.wf = el("span", "wf-pill");
  cState.append(c.cond, c.wf);

  const cAct = el("div", "cell c-actions");
  c.bAck = el("button", "btn btn-ack");
  c.bAck.type = "button"; c.bAck.dataset.testid = "btn-ack"; c.bAck.dataset.action = "ack";
  c.bDis = el("button", "btn btn-dispatch");
  c.bDis.type = "button"; c.bDis.dataset.testid = "btn-dispatch"; c.bDis.dataset.action = "dispatch";
  c.bClose = el("button", "btn btn-close");
  c.bClose.type = "button"; c.bClose.dataset.testid = "btn-close"; c.bClose.dataset.action = "close";
  cAct.append(c.bAck, c.bDis, c.bClose);

  main.append(cLevel, cAge, cAsset, c.valueCell, cState, cAct);
  const formSlot = el("div", "row-form-slot");
  const err = el("div", "row-error");
  err.setAttribute("role", "alert");
  err.hidden = true;
  row.append(main, formSlot, err);
  row._c = c;
  return row;
}

function unitOf(a) {
  const s = sensors.get(a.sensor);
  return s && s.metrics ? s.metrics[a.metric] || "" : "";
}

function updateRow(row, a) {
  const c = row._c;
  const level = LEVEL_RANK[a.level] === undefined ? "unknown" : a.level;
  setAttr(row, "data-level", level);
  setAttr(row, "data-domain", a.domain || "");
  setAttr(row, "data-condition", a.condition || "");
  setAttr(row, "data-workflow", a.workflow || "");
  setAttr(row, "data-peak-level", a.peak_level || a.level || "");
  setAttr(row, "data-sensor", a.sensor || "");
  row.classList.toggle("selected", a.sensor === selectedSensor);
  row._alert = a;

  setText(c.levelName, levelName(a.level));
  setText(c.levelRoman, levelRoman(a.level));
  const peakHigher = !!a.peak_level && LEVEL_RANK[a.peak_level] !== undefined &&
    LEVEL_RANK[a.level] !== undefined && LEVEL_RANK[a.peak_level] < LEVEL_RANK[a.level];
  if (c.peak.hidden === peakHigher) c.peak.hidden = !peakHigher;
  if (peakHigher) {
    setText(c.peak, t("peak", { level: levelName(a.peak_level) }));
    setAttr(c.peak, "data-level", a.peak_level);
    setAttr(c.peak, "title", t("peak_title", { level: levelLabel(a.peak_level) }));
  }
  updateManagementBadges(row, a);

  updateAge(row, a);
  const fc = a.condition === "cleared" ? "" : fmtForecast(a.forecast);  // a cleared alert's forecast is stale
  if (c.forecast.hidden === !!fc) c.forecast.hidden = !fc;
  if (fc) {
    setText(c.forecast, fc);
    setAttr(c.forecast, "data-level", a.forecast.level);
    setAttr(c.forecast, "title", forecastTitle(a.forecast));
  }
  setText(c.domain, domainName(a.domain));
  setAttr(c.domain, "data-domain", a.domain || "");
  setText(c.asset, a.asset || "—");
  setText(c.sensor, a.sensor || "");
  const district = districtOf.get(a.sensor);
  setText(c.district, district ? districtLabel(district) : "");
  setAttr(c.district, "title", a.owner || "");
  updateDomainTag(row, a);
  setText(c.message, a.message || "");
  setAttr(c.message, "title", a.message || "");
  setText(c.alertId, a.id);
  setAttr(c.alertId, "title", a.rule || "");
  setText(c.value, fmtNum(a.value));
  setText(c.unit, unitOf(a));
  setText(c.threshold, (a.metric || "") + " · " + t("threshold_short") + " " + fmtNum(a.threshold));
  setAttr(c.valueCell, "title", t("updated_at", { time: fmtTime(Number(a.updated_at)) }));

  setText(c.cond, labelOr("cond_", a.condition));
  setAttr(c.cond, "data-condition", a.condition || "");
  setText(c.wf, labelOr("wf_", a.workflow));
  setAttr(c.wf, "data-workflow", a.workflow || "");
  setAttr(c.wf, "title", a.dispatched_to ? a.dispatched_to : "");

  const busy = row.dataset.busy === "1";
  setText(c.bAck, t("btn_ack"));
  setText(c.bDis, t("btn_dispatch"));
  setText(c.bClose, t("btn_close"));
  setAttr(c.bAck, "title", t("ack_title"));
  setAttr(c.bDis, "title", t("dispatch_title"));
  setAttr(c.bClose, "title", a.condition === "cleared" ? t("close_title") : t("close_title_active"));
  const ackOff = busy || a.workflow !== "new";
  const disOff = busy || !(a.workflow === "new" || a.workflow === "acknowledged");
  const closeOff = busy || a.condition !== "cleared";
  if (c.bAck.disabled !== ackOff) c.bAck.disabled = ackOff;
  if (c.bDis.disabled !== disOff) c.bDis.disabled = disOff;
  if (c.bClose.disabled !== closeOff) c.bClose.disabled = closeOff;

  // An open inline form whose action no longer applies is withdrawn.
  if (row.classList.contains("has-form")) {
    const form = row.querySelector(".inline-form");
    if (form && form.dataset.action === "dispatch" && disOff && !busy) closeForm(row);
    if (form && form.dataset.action === "close") {
      const hint = form.querySelector(".form-hint");
      hint.hidden = a.condition === "cleared";
      setText(hint, t("close_still_active"));
    }
  }
}

// Alert management (README "Alert management"): a missed response deadline and a flapping
// alert show as badges beside the level; created on first use, so rows without them cost nothing.
function updateManagementBadges(row, a) {
  const c = row._c;
  for (const flag of ["overdue", "flapping"]) {
    let badge = c[flag];
    if (!badge) {
      if (!a[flag]) continue;
      badge = c[flag] = el("span", flag + "-badge");
      badge.dataset.testid = flag + "-badge";
      c.peak.parentNode.append(badge);
    }
    if (badge.hidden === !!a[flag]) badge.hidden = !a[flag];
    if (a[flag]) {
      setText(badge, t(flag));
      setAttr(badge, "title", t(flag + "_title", { step: t("step_" + (a.overdue_for || "acknowledge")),
                                                   tier: a.escalation_tier || 1 }));
    }
  }
}

// Domain detectors (README "Domain detectors"): a lift event's name (GB/T 24476) and a hazard
// source's grade beside the asset; created on first use, so other rows cost nothing.
function updateDomainTag(row, a) {
  const c = row._c;
  const parts = [];
  if (a.event && a.event.code) parts.push(getLang() === "zh-CN" ? a.event.zh || a.event.en : a.event.en || a.event.zh);
  if (a.hazard_grade && a.hazard_grade.level) {
    parts.push(t("hazard_grade", { level: a.hazard_grade.level, r: fmtNum(a.hazard_grade.r) }));
  }
  if (!c.domainTag) {
    if (!parts.length) return;
    c.domainTag = el("span", "event-tag");
    c.domainTag.dataset.testid = "event-tag";
    c.asset.after(c.domainTag);
  }
  if (c.domainTag.hidden === !!parts.length) c.domainTag.hidden = !parts.length;
  setText(c.domainTag, parts.join(" · "));
}

function updateAge(row, a) {
  const ra = Number(a.raised_at);
  const age = row._c.age;
  if (!Number.isFinite(ra)) { setText(age, "—"); return; }
  setText(age, fmtAge(Date.now() - ra));
  if (age._ra !== ra) { age._ra = ra; age._lang = null; }
  if (age._lang !== getLang()) { age._lang = getLang(); age.title = t("raised_at", { time: fmtTime(ra) }); }
}

function tickAges() {
  for (const row of rows.values()) if (row.isConnected && row._alert) updateAge(row, row._alert);
}

function updateFlashes() {
  const now = Date.now();
  for (const [id, until] of flashUntil) {
    const row = rows.get(id);
    if (until <= now) {
      flashUntil.delete(id);
      if (row) { row.classList.remove("flash", "flash-on"); delete row.dataset.flash; }
    } else if (row && !row.classList.contains("flash")) {
      row.classList.add("flash");
      row.dataset.flash = "1";
    }
  }
  if (flashUntil.size && !flashTimer && !reduceMotion) {
    flashTimer = setInterval(() => {
      flashPhase = !flashPhase;
      for (const id of flashUntil.keys()) { const row = rows.get(id); if (row) row.classList.toggle("flash-on", flashPhase); }
      if (!flashUntil.size) { clearInterval(flashTimer); flashTimer = null; }
    }, FLASH_PHASE_MS);
  }
}

function updateCounts(shown) {
  const counts = { red: 0, orange: 0, yellow: 0, blue: 0 };
  for (const a of alerts.values()) if (counts[a.level] !== undefined) counts[a.level] += 1;
  for (const lv of LEVELS) {
    const chip = $("#count-" + lv);
    setAttr(chip, "data-count", counts[lv]);
    setText(chip.querySelector(".chip-num"), counts[lv]);
    chip.classList.toggle("zero", counts[lv] === 0);
    chip.classList.toggle("selected", filters.level === lv);
    setAttr(chip, "aria-pressed", filters.level === lv ? "true" : "false");
  }
  statusBar.setLevels(counts);
  const total = alerts.size;
  const tot = $("#count-total");
  setAttr(tot, "data-count", total);
  setText(tot.querySelector(".chip-num"), total);

  const empty = $("#board-empty");
  const state = !haveSnapshot ? "waiting" : total === 0 ? "none" : shown === 0 ? "filtered" : "hidden";
  setAttr(empty, "data-state", state);
  if (empty.hidden !== (state === "hidden")) empty.hidden = state === "hidden";
  setText(empty.querySelector(".empty-text"),
    state === "waiting" ? t("empty_waiting") : state === "none" ? t("empty_none") : state === "filtered" ? t("empty_filtered") : "");
  setText($("#status-shown"), haveSnapshot ? t("shown", { shown, total }) : "");
  updateTitle(counts.red);
}

// The tab title shows the red count; changing it is an IPC to the browser, so at most once a second.
function updateTitle(red) {
  const title = (red ? "(" + red + ") " : "") + t("product");
  if (document.title === title) return;
  const wait = titleAt + TITLE_MIN_MS - Date.now();
  clearTimeout(titleTimer);
  if (wait > 0) { titleTimer = setTimeout(() => updateTitle(Number($("#count-red").dataset.count) || 0), wait); return; }
  titleAt = Date.now();
  document.title = title;
}

function updateSeqDisplay() {
  const board = $("#board");
  setAttr(board, "data-last-seq", lastSeq === null ? "" : lastSeq);
  setAttr(board, "data-ready", haveSnapshot ? "true" : "false");
  setText($("#status-seq"), lastSeq === null ? "" : t("seq", { seq: lastSeq }));
  statusBar.setLink(connState, lastSeq);
}

// ---------------------------------------------------------------- connection display
function setConn(state) {
  connState = state;
  const box = $("#conn-state");
  setAttr(box, "data-state", state);
  setText(box.querySelector(".conn-text"), t("conn_" + state));
  document.body.dataset.conn = state;
  statusBar.setLink(state, lastSeq);
  updateBanner();
}

function updateBanner() {
  const banner = $("#conn-banner");
  const show = !stopped && connState !== "connected" && (everConnected || attempts > 1 || connState === "disconnected");
  banner.hidden = !show;
  $("#board").classList.toggle("stale", show && haveSnapshot);
  $("#map").classList.toggle("stale", show && haveSnapshot);
  if (!show) return;
  const downFor = lastLiveAt ? Date.now() - lastLiveAt : 0;
  banner.dataset.severity = everConnected && downFor < 15000 ? "amber" : "red";
  setText(banner.querySelector(".banner-text"), everConnected ? t("banner_lost") : t("banner_connecting"));
  setText(banner.querySelector(".banner-detail"), lastLiveAt
    ? t("banner_detail", { ago: fmtAge(downFor), n: Math.max(1, attempts) })
    : t("banner_detail_never", { n: Math.max(1, attempts) }));
}

// ---------------------------------------------------------------- actions
function operatorName() { return $("#operator").value.trim(); }

function requireOperator() {
  const name = operatorName();
  if (name) return name;
  const input = $("#operator");
  input.classList.remove("attention"); void input.offsetWidth; input.classList.add("attention");
  input.focus();
  toast(t("operator_required"), "warn", 5000);
  return null;
}

function setRowError(row, message) {
  const err = row.querySelector(".row-error");
  clearTimeout(row._errTimer);
  if (message) {
    err.textContent = message;
    err.hidden = false;
    row._errTimer = setTimeout(() => setRowError(row, ""), 20000);
  } else { err.textContent = ""; err.hidden = true; }
}
function setBusy(row, busy) {
  if (busy) row.dataset.busy = "1"; else delete row.dataset.busy;
  if (row._alert) updateRow(row, row._alert);
  for (const b of row.querySelectorAll(".inline-form button, .inline-form input, .inline-form textarea")) b.disabled = busy;
}

async function doAction(row, action, extra) {
  const a = row._alert;
  if (!a) return false;
  const by = requireOperator();
  if (!by) return false;
  const body = Object.assign({ by, note: "" }, extra || {});
  setRowError(row, "");
  setBusy(row, true);
  const res = await api("POST", "/api/alerts/" + encodeURIComponent(a.id) + "/" + action, body);
  setBusy(row, false);
  if (!res.ok) {
    const formErr = row.querySelector(".inline-form .form-error");
    if (formErr) { formErr.textContent = res.error; formErr.hidden = false; }
    else setRowError(row, res.error);
    return false;
  }
  // The board itself follows the websocket event stream (single source of truth).
  if (action === "ack") toast(t("done_ack", { id: a.id }), "ok");
  else if (action === "dispatch") toast(t("done_dispatch", { id: a.id, to: body.to }), "ok");
  else toast(t("done_close", { id: a.id }), "ok");
  return true;
}

function rememberDispatchTo(to) {
  let list = [];
  try { list = JSON.parse(lsGet(STORE.dispatchTo, "[]")); } catch (e) { list = []; }
  if (!Array.isArray(list)) list = [];
  list = [to].concat(list.filter((x) => x !== to)).slice(0, 20);
  lsSet(STORE.dispatchTo, JSON.stringify(list));
  fillDispatchList();
}
function fillDispatchList() {
  let dl = $("#dispatch-to-list");
  if (!dl) { dl = el("datalist"); dl.id = "dispatch-to-list"; document.body.append(dl); }
  let list = [];
  try { list = JSON.parse(lsGet(STORE.dispatchTo, "[]")); } catch (e) { list = []; }
  dl.replaceChildren(...(Array.isArray(list) ? list : []).map((v) => { const o = el("option"); o.value = v; return o; }));
}

function openForm(row, action) {
  const existing = row.querySelector(".inline-form");
  if (existing && existing.dataset.action === action) { existing.querySelector("input, textarea").focus(); return; }
  closeForm(row);
  setRowError(row, "");
  const form = el("form", "inline-form " + action + "-form");
  form.dataset.action = action;
  form.dataset.testid = action + "-form";
  form.noValidate = true;
  const fields = el("div", "form-fields");
  if (action === "dispatch") {
    const lab = el("label", "form-field");
    lab.append(el("span", "field-label", t("dispatch_to")));
    const to = el("input");
    to.name = "to"; to.type = "text"; to.required = true; to.maxLength = 200;
    to.placeholder = t("dispatch_to_placeholder");
    to.setAttribute("list", "dispatch-to-list");
    to.autocomplete = "off";
    lab.append(to);
    fields.append(lab);
  }
  const nlab = el("label", "form-field form-note");
  nlab.append(el("span", "field-label", t("note")));
  const note = el("input");
  note.name = "note"; note.type = "text"; note.maxLength = 1000; note.autocomplete = "off";
  note.placeholder = action === "close" ? t("note_placeholder_close") : t("note_placeholder_dispatch");
  if (action === "close") note.required = true;
  nlab.append(note);
  fields.append(nlab);
  const submit = el("button", "btn btn-primary btn-submit", action === "close" ? t("btn_submit_close") : t("btn_submit_dispatch"));
  submit.type = "submit";
  const cancel = el("button", "btn btn-cancel", t("btn_cancel"));
  cancel.type = "button";
  const acts = el("div", "form-actions");
  acts.append(submit, cancel);
  const hint = el("div", "form-hint");
  hint.hidden = true;
  const ferr = el("div", "form-error");
  ferr.setAttribute("role", "alert");
  ferr.hidden = true;
  form.append(fields, acts, hint, ferr);
  if (action === "close") {
    const a = row._alert;
    hint.hidden = !a || a.condition === "cleared";
    hint.textContent = t("close_still_active");
  }
  cancel.addEventListener("click", () => closeForm(row));
  form.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); closeForm(row); } });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    ferr.hidden = true;
    const extra = { note: note.value.trim() };
    if (action === "dispatch") {
      const toEl = form.querySelector("input[name=to]");
      const toVal = toEl.value.trim();
      if (!toVal) { ferr.textContent = t("dispatch_to_required"); ferr.hidden = false; toEl.focus(); return; }
      extra.to = toVal;
    } else if (!extra.note) {
      ferr.textContent = t("close_note_required"); ferr.hidden = false; note.focus(); return;
    }
    const ok = await doAction(row, action, extra);
    if (ok) {
      if (action === "dispatch") rememberDispatchTo(extra.to);
      closeForm(row);
    }
  });
  row.querySelector(".row-form-slot").append(form);
  row.classList.add("has-form");
  (form.querySelector("input[name=to]") || note).focus();
}
function closeForm(row) {
  const form = row.querySelector(".inline-form");
  if (form) form.remove();
  row.classList.remove("has-form");
}

function onBoardClick(e) {
  const row = e.target.closest(".alert-row");
  if (!row) return;
  const btn = e.target.closest("button[data-action]");
  if (!btn) {
    // Anywhere else on the row's main line opens the sensor (not inside forms or errors).
    if (e.target.closest(".row-main") && row._alert) openSensor(row._alert.sensor);
    return;
  }
  if (btn.disabled) return;
  const action = btn.dataset.action;
  if (action === "ack") doAction(row, "ack");
  else if (!operatorName()) requireOperator();
  else openForm(row, action);
}

// ---------------------------------------------------------------- header, filters, language
function fillFilters() {
  for (const a of alerts.values()) if (a.domain) knownDomains.add(a.domain);
  fillSelect($("#filter-domain"), [["", t("all_domains")], ...Array.from(knownDomains).map((d) => [d, domainName(d)])]);
  fillSelect($("#filter-level"), [["", t("all_levels")], ...LEVELS.map((l) => [l, levelLabel(l)])]);
  const districts = new Set(districtOf.values());
  for (const id of map.districtIds()) districts.add(id);
  const dOpts = Array.from(districts).sort().map((d) => [d, districtLabel(d)]);
  fillSelect($("#filter-district"), [["", t("all_districts")], ...dOpts]);
  const owners = new Set();
  for (const s of sensors.values()) if (s.owner) owners.add(s.owner);
  for (const a of alerts.values()) if (a.owner) owners.add(a.owner);
  fillSelect($("#filter-owner"), [["", t("all_owners")], ...Array.from(owners).sort().map((o) => [o, o])]);
  fillSelect($("#filter-state"), [["", t("all_states")], ...STATES.map((s) => [s, t("state_" + s)])]);
  for (const [key, id] of [["domain", "#filter-domain"], ["level", "#filter-level"], ["district", "#filter-district"],
    ["owner", "#filter-owner"], ["state", "#filter-state"]]) {
    const sel = $(id);
    if (sel.value !== filters[key]) sel.value = filters[key];
    if (sel.value !== filters[key]) filters[key] = sel.value;  // no longer offered
    sel.classList.toggle("active", !!filters[key]);
  }
}

function setFilter(key, value) {
  filters[key] = value;
  $("#filter-" + key).value = value;
  $("#filter-" + key).classList.toggle("active", !!value);
  if (key === "domain" || key === "district" || key === "owner") applyMapFilter();
  needsResort = true;
  schedule(true);
}

function applyLanguage() {
  document.documentElement.lang = getLang();
  for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
  for (const n of document.querySelectorAll("[data-i18n-placeholder]")) n.placeholder = t(n.dataset.i18nPlaceholder);
  for (const n of document.querySelectorAll("[data-i18n-aria]")) n.setAttribute("aria-label", t(n.dataset.i18nAria));
  for (const n of document.querySelectorAll("[data-i18n-title]")) n.title = t(n.dataset.i18nTitle);
  const lt = $("#lang-toggle");
  lt.textContent = t("lang_button");
  lt.title = t("lang_button_title");
  lt.dataset.lang = getLang();
  lt.lang = getLang() === "zh-CN" ? "en" : "zh-CN";  // the button names the other language
  $("#token-change").title = t("change_token_title");
  $("#map-mode").title = t("map_mode_title");
  setText($("#product-name"), t("product"));
  setText($("#map-note"), t("map_no_base"));
  fillFilters();
  setConn(connState);
  updateSoundStatus();
  updateSeqDisplay();
  renderLegend();
  updateMapCount();
  map.redrawAll();
  detail.applyLanguage();
  statusBar.applyLanguage();
  const err = $("#token-error");
  if (!err.hidden && err.dataset.reason) err.textContent = t(err.dataset.reason);
  for (const row of rows.values()) if (row._alert) updateRow(row, row._alert);
  needsResort = true;
  schedule(true);
  tickClock();
}

function tickClock() {
  const now = new Date();
  setText($("#clock .clock-time"), pad2(now.getHours()) + ":" + pad2(now.getMinutes()) + ":" + pad2(now.getSeconds()));
  const wd = now.toLocaleDateString(getLang(), { weekday: "short" });
  setText($("#clock .clock-date"), now.getFullYear() + "-" + pad2(now.getMonth() + 1) + "-" + pad2(now.getDate()) + " " + wd);
}

function resetBoard() {
  // A new token may see a different set of alerts: start from a fresh snapshot.
  lastSeq = null;
  haveSnapshot = false;
  seqDirty = true;
  for (const id of alerts.keys()) dirty.add(id);
  alerts.clear();
  needsResort = true;
  alertsChanged = true;
  catalogueLoaded = false;
  schedule(true);
}

function wireUi() {
  const op = $("#operator");
  op.value = lsGet(STORE.operator, "");
  op.addEventListener("input", () => { lsSet(STORE.operator, op.value.trim()); op.classList.remove("attention"); });

  $("#mute-toggle").addEventListener("click", () => {
    muted = !muted;
    lsSet(STORE.muted, muted ? "true" : "false");
    if (!muted) unlockAudio();
    updateSoundStatus();
  });
  $("#lang-toggle").addEventListener("click", () => {
    setLang(getLang() === "zh-CN" ? "en" : "zh-CN");
    applyLanguage();
  });
  $("#token-change").addEventListener("click", () => {
    stopSocket();
    statusBar.stop();
    setConn("disconnected");
    showTokenBox(null);
  });
  $("#token-cancel").addEventListener("click", () => { hideTokenBox(); start(); });
  $("#token-form").addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("#token-cancel").hidden) { hideTokenBox(); start(); }
  });
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("#token-input").value.trim();
    if (!v) { $("#token-input").focus(); return; }
    setToken(v);
    hideTokenBox();
    resetBoard();
    start();
  });
  for (const key of ["domain", "level", "district", "owner", "state"]) {
    $("#filter-" + key).addEventListener("change", (e) => setFilter(key, e.target.value));
  }
  for (const lv of LEVELS) {
    $("#count-" + lv).addEventListener("click", () => setFilter("level", filters.level === lv ? "" : lv));
  }
  $("#board").addEventListener("click", onBoardClick);
  for (const b of document.querySelectorAll("#view-switch .seg-btn")) b.addEventListener("click", () => setView(b.dataset.view));
  for (const b of document.querySelectorAll("#map-mode .seg-btn")) b.addEventListener("click", () => setMapMode(b.dataset.mode));
  $("#map-zoom-in").addEventListener("click", () => map.zoom(1.6));
  $("#map-zoom-out").addEventListener("click", () => map.zoom(1 / 1.6));
  $("#map-fit").addEventListener("click", () => map.reset());
  // Browsers only allow audio after a user gesture: unlock on the first interaction.
  const unlock = () => { if (!muted) unlockAudio(); };
  document.addEventListener("pointerdown", unlock, { capture: true });
  document.addEventListener("keydown", unlock, { capture: true });
}

function init() {
  whenUnauthorized(authRejected);
  statusBar = new StatusBar();
  map = new CityMap($("#map"), {
    onSelect: openSensor,
    onDistrict: (id) => setFilter("district", filters.district === id ? "" : id)
  });
  detail = new SensorDetail($("#detail"), {
    sensor: (id) => sensors.get(id),
    siblings: (s) => (s.asset && byAsset.get(s.asset)) || [],
    gateway: (id) => statusBar.gateway(id),
    districtName: districtLabel,
    openAlerts: openAlertsOf,
    onClose: closeSensor,
    onSelect: openSensor
  });
  closeOnEscape(detail, closeSensor);
  statusBar.onGateways(() => { if (detail.isOpen) detail.paintQuality(); });
  wireUi();
  setView(lsGet(STORE.view, "split"));
  setMapMode(lsGet(STORE.mapMode, "sensors"));
  fillDispatchList();
  applyLanguage();
  updateCounts(0);
  tickClock();
  setInterval(tickClock, 1000);
  setInterval(() => { tickAges(); updateBanner(); if (flashUntil.size) updateFlashes(); }, AGE_TICK_MS);
  updateSoundStatus();
  start();
}

// Read-only hooks for browser tests and diagnostics.
window.lifeline = {
  get lastSeq() { return lastSeq; },
  get connection() { return connState; },
  get beeps() { return beepCount; },
  get renders() { return renderCount; },
  get openAlerts() { return alerts.size; },
  get eventsApplied() { return eventsApplied; },
  get duplicatesIgnored() { return duplicatesIgnored; },
  get snapshotSeq() { return snapshotSeq; },
  get eventsSinceSnapshot() { return eventsSinceSnapshot; },
  get sensors() { return sensors.size; },
  get timings() { return Object.assign({}, timings); },
  get perf() { return perf.snapshot(); },
  resetPerf: () => perf.reset(),
  get language() { return getLang(); },
  mapPosition: (id) => (map ? map.screenPosition(id) : null),
  formatForecast: (forecast, language) => {
    const keep = getLang();
    if (language) setLang(language);
    try { return fmtForecast(forecast); } finally { if (language) setLang(keep); }
  },
  I18N
};

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
