/* Lifeline control-room page: live alert board.
 * Plain JS, no dependencies (control rooms are air-gapped).
 * State flows one way: websocket snapshot/events -> `alerts` map -> batched DOM render (rAF).
 */
"use strict";

(function () {

// ---------------------------------------------------------------- i18n
// Every UI string lives here. Keys missing in one language fall back to English.
const I18N = {
  en: {
    product: "Lifeline 城市生命线监测预警",
    lang_button: "中文",
    lang_button_title: "切换到中文",
    level_red: "Red", level_orange: "Orange", level_yellow: "Yellow", level_blue: "Blue",
    level_roman_red: "I", level_roman_orange: "II", level_roman_yellow: "III", level_roman_blue: "IV",
    level_with_roman: "{name} {roman}",
    peak: "peak {level}",
    total_open: "Open",
    open_by_level: "Open alerts by level",
    filter_domain: "Domain", filter_level: "Level",
    all_domains: "All domains", all_levels: "All levels",
    domain_gas: "Gas", domain_pipeline: "Pipeline", domain_bridge: "Bridge",
    domain_elevator: "Elevator", domain_hazard: "Hazard",
    operator: "Operator", operator_placeholder: "your name",
    operator_required: "Enter your operator name (top right) before handling alerts.",
    sound_on: "Sound on", sound_off: "Muted",
    sound_title: "Alarm sound for new red alerts",
    sound_blocked: "Browser blocked audio: click anywhere on the page to enable the alarm sound.",
    sound_status_on: "Alarm sound on", sound_status_off: "Alarm sound muted",
    change_token: "Token",
    change_token_title: "Enter a different access token",
    conn_connected: "Live", conn_connecting: "Connecting…", conn_disconnected: "Disconnected",
    banner_lost: "Connection lost — reconnecting",
    banner_connecting: "Connecting to the alert service…",
    banner_detail: "Board may be out of date (last live update {ago} ago). Attempt {n}.",
    banner_detail_never: "No live data yet. Attempt {n}.",
    col_level: "Level", col_age: "Age", col_domain: "Domain", col_asset: "Asset / sensor",
    col_metric: "Metric", col_value: "Value / threshold", col_message: "Message",
    col_condition: "Condition", col_workflow: "Workflow", col_actions: "Actions",
    cond_active: "Active", cond_cleared: "Cleared",
    wf_new: "New", wf_acknowledged: "Acknowledged", wf_dispatched: "Dispatched", wf_closed: "Closed",
    threshold_short: "thr",
    btn_ack: "Acknowledge", btn_dispatch: "Dispatch", btn_close: "Close",
    btn_submit_dispatch: "Dispatch", btn_submit_close: "Close alert", btn_cancel: "Cancel",
    ack_title: "Acknowledge: I have seen this alert",
    dispatch_title: "Hand this alert to a response team",
    close_title: "Close this alert (only once its condition has cleared)",
    close_title_active: "Cannot close while the condition is still active",
    dispatch_to: "To (team / unit)", dispatch_to_placeholder: "e.g. gas emergency repair team 2",
    note: "Note", note_placeholder_dispatch: "instructions for the team (optional)",
    note_placeholder_close: "how it was resolved (required)",
    close_note_required: "A closing note is required.",
    dispatch_to_required: "Say to whom the alert is dispatched.",
    close_still_active: "The condition is still active: the alert cannot be closed yet.",
    err_prefix: "Refused: {msg}",
    err_forbidden: "This access token is not allowed to do that (read-only role?).",
    err_not_found: "Alert not found — it may already be closed.",
    err_network: "Could not reach the server: {msg}",
    err_http: "Server error {status}: {msg}",
    done_ack: "{id} acknowledged", done_dispatch: "{id} dispatched to {to}", done_close: "{id} closed",
    empty_waiting: "Waiting for live data…",
    empty_none: "No open alerts",
    empty_filtered: "No open alerts match the filters",
    shown: "Showing {shown} of {total} open alerts",
    seq: "event seq {seq}",
    token_title: "Access token required",
    token_help: "This page needs an API token (viewer or operator). Paste the token issued for this control room.",
    token_placeholder: "paste token",
    token_submit: "Connect",
    token_rejected: "The server rejected the token (401). Paste a valid token.",
    token_missing: "No access token in this session.",
    age_s: "{s}s", age_m: "{m}m {s}s", age_h: "{h}h {m}m", age_d: "{d}d {h}h",
    raised_at: "Raised {time}",
    updated_at: "Updated {time}",
    peak_title: "Highest level reached: {level}",
    new_red: "NEW RED ALERT {id}: {asset} {message}"
  },
  "zh-CN": {
    product: "Lifeline 城市生命线监测预警",
    lang_button: "EN",
    lang_button_title: "Switch to English",
    level_red: "红色", level_orange: "橙色", level_yellow: "黄色", level_blue: "蓝色",
    level_roman_red: "I级", level_roman_orange: "II级", level_roman_yellow: "III级", level_roman_blue: "IV级",
    level_with_roman: "{name} {roman}",
    peak: "峰值 {level}",
    total_open: "未关闭",
    open_by_level: "按等级统计的未关闭告警",
    filter_domain: "领域", filter_level: "等级",
    all_domains: "全部领域", all_levels: "全部等级",
    domain_gas: "燃气", domain_pipeline: "管网", domain_bridge: "桥梁",
    domain_elevator: "电梯", domain_hazard: "危险源",
    operator: "值班员", operator_placeholder: "您的姓名",
    operator_required: "处置告警前请先在右上角填写值班员姓名。",
    sound_on: "声音开", sound_off: "已静音",
    sound_title: "新红色告警提示音",
    sound_blocked: "浏览器阻止了声音：请在页面任意位置点击一次以启用告警提示音。",
    sound_status_on: "告警提示音已开启", sound_status_off: "告警提示音已静音",
    change_token: "令牌",
    change_token_title: "更换访问令牌",
    conn_connected: "实时", conn_connecting: "连接中…", conn_disconnected: "已断开",
    banner_lost: "连接中断 — 正在重连",
    banner_connecting: "正在连接告警服务…",
    banner_detail: "看板数据可能已过时（距上次实时更新 {ago}）。第 {n} 次尝试。",
    banner_detail_never: "尚无实时数据。第 {n} 次尝试。",
    col_level: "等级", col_age: "持续", col_domain: "领域", col_asset: "对象 / 传感器",
    col_metric: "指标", col_value: "数值 / 阈值", col_message: "告警信息",
    col_condition: "状态", col_workflow: "处置", col_actions: "操作",
    cond_active: "持续中", cond_cleared: "已恢复",
    wf_new: "待确认", wf_acknowledged: "已确认", wf_dispatched: "已派单", wf_closed: "已关闭",
    threshold_short: "阈值",
    btn_ack: "确认", btn_dispatch: "派单", btn_close: "关闭",
    btn_submit_dispatch: "派单", btn_submit_close: "关闭告警", btn_cancel: "取消",
    ack_title: "确认：已知悉该告警",
    dispatch_title: "将告警派给处置单位",
    close_title: "关闭告警（需告警状态已恢复）",
    close_title_active: "告警状态仍在持续，不能关闭",
    dispatch_to: "派给（单位 / 班组）", dispatch_to_placeholder: "如：燃气抢修二队",
    note: "备注", note_placeholder_dispatch: "给处置单位的说明（可选）",
    note_placeholder_close: "处置结果（必填）",
    close_note_required: "关闭告警必须填写备注。",
    dispatch_to_required: "请填写派单对象。",
    close_still_active: "告警状态仍在持续，暂不能关闭。",
    err_prefix: "操作被拒绝：{msg}",
    err_forbidden: "当前令牌无此操作权限（只读角色？）。",
    err_not_found: "未找到该告警，可能已被关闭。",
    err_network: "无法连接服务器：{msg}",
    err_http: "服务器错误 {status}：{msg}",
    done_ack: "{id} 已确认", done_dispatch: "{id} 已派给 {to}", done_close: "{id} 已关闭",
    empty_waiting: "等待实时数据…",
    empty_none: "当前无未关闭告警",
    empty_filtered: "没有符合筛选条件的未关闭告警",
    shown: "显示 {shown} / 共 {total} 条未关闭告警",
    seq: "事件序号 {seq}",
    token_title: "需要访问令牌",
    token_help: "本页面需要 API 访问令牌（查看员或值班员角色）。请粘贴为本监控中心签发的令牌。",
    token_placeholder: "粘贴令牌",
    token_submit: "连接",
    token_rejected: "服务器拒绝了该令牌（401）。请粘贴有效令牌。",
    token_missing: "当前会话没有访问令牌。",
    age_s: "{s}秒", age_m: "{m}分{s}秒", age_h: "{h}小时{m}分", age_d: "{d}天{h}小时",
    raised_at: "发生于 {time}",
    updated_at: "更新于 {time}",
    peak_title: "曾达到的最高等级：{level}",
    new_red: "新红色告警 {id}：{asset} {message}"
  }
};

const LEVELS = ["red", "orange", "yellow", "blue"];
const LEVEL_RANK = { red: 0, orange: 1, yellow: 2, blue: 3 };
const DOMAINS = ["gas", "pipeline", "bridge", "elevator", "hazard"];
const STORE = {
  token: "lifeline.token",        // sessionStorage
  operator: "lifeline.operator",  // localStorage
  muted: "lifeline.muted",
  lang: "lifeline.lang",
  dispatchTo: "lifeline.dispatchTo"
};
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const AGE_TICK_MS = 2000;
const FLASH_MS = 6000;
const BEEP_MIN_GAP_MS = 1500;
const FRESH_MAX_PER_FRAME = 12;

// ---------------------------------------------------------------- small helpers
const $ = (sel, root) => (root || document).querySelector(sel);

function lsGet(key, dflt) {
  try { const v = localStorage.getItem(key); return v === null ? dflt : v; } catch (e) { return dflt; }
}
function lsSet(key, val) { try { localStorage.setItem(key, val); } catch (e) { /* private mode */ } }
function ssGet(key) { try { return sessionStorage.getItem(key); } catch (e) { return null; } }
function ssSet(key, val) { try { sessionStorage.setItem(key, val); } catch (e) { /* ignore */ } }
function ssDel(key) { try { sessionStorage.removeItem(key); } catch (e) { /* ignore */ } }

let lang = lsGet(STORE.lang, "zh-CN");
if (!I18N[lang]) lang = "zh-CN";

function t(key, vars) {
  let s = (I18N[lang] && I18N[lang][key]);
  if (s === undefined) s = I18N.en[key];
  if (s === undefined) s = key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
  return s;
}

function levelName(level) { return LEVEL_RANK[level] === undefined ? String(level || "?") : t("level_" + level); }
function levelRoman(level) { return LEVEL_RANK[level] === undefined ? "" : t("level_roman_" + level); }
function levelLabel(level) { return t("level_with_roman", { name: levelName(level), roman: levelRoman(level) }).trim(); }
function domainName(d) { const k = "domain_" + d; const s = t(k); return s === k ? String(d || "") : s; }

function fmtNum(v) {
  if (v === null || v === undefined || v === "") return "—";
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  const digits = a >= 100 ? 1 : a >= 1 ? 2 : 4;
  return String(Number(n.toFixed(digits)));
}

function pad2(n) { return n < 10 ? "0" + n : String(n); }
function fmtTime(ms) {
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
    pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
}
function fmtAge(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return t("age_s", { s });
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return t("age_m", { m, s: pad2(s) });
  let h = Math.floor(m / 60); m %= 60;
  if (h < 24) return t("age_h", { h, m: pad2(m) });
  const d = Math.floor(h / 24); h %= 24;
  return t("age_d", { d, h });
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}
function setText(node, text) { const s = String(text); if (node.textContent !== s) node.textContent = s; }
function setAttr(node, name, val) { const s = String(val); if (node.getAttribute(name) !== s) node.setAttribute(name, s); }

// ---------------------------------------------------------------- state
const alerts = new Map();     // id -> alert (open alerts only)
const rows = new Map();       // id -> row element (cached, may be detached when filtered out)
const dirty = new Set();      // ids whose row must be (re)rendered
const flashUntil = new Map(); // id -> epoch ms until which the row flashes
const freshIds = new Set();   // ids of rows that get a short "just changed" highlight
const knownDomains = new Set(DOMAINS);
let domainsChanged = false;
let needsResort = true;
let seqDirty = true;
let rafPending = false;
let haveSnapshot = false;
let lastSeq = null;
let lastLiveAt = null;        // wall clock of the last message received while connected
let filters = { domain: "", level: "" };
let token = null;
let stopped = true;           // true while we have no usable token
let beepCount = 0;
let renderCount = 0;

// ---------------------------------------------------------------- token handling
function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl !== null) {
    if (fromUrl) ssSet(STORE.token, fromUrl);
    url.searchParams.delete("token");
    const clean = url.pathname + (url.searchParams.toString() ? "?" + url.searchParams.toString() : "") + url.hash;
    try { window.history.replaceState(window.history.state, "", clean); } catch (e) { /* ignore */ }
  }
  return ssGet(STORE.token);
}

function showTokenBox(reasonKey) {
  const box = $("#token-box");
  const err = $("#token-error");
  if (reasonKey) { err.textContent = t(reasonKey); err.hidden = false; err.dataset.reason = reasonKey; }
  else { err.hidden = true; err.textContent = ""; delete err.dataset.reason; }
  box.hidden = false;
  document.body.classList.add("need-token");
  $("#token-cancel").hidden = !ssGet(STORE.token);
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
  ssDel(STORE.token);
  token = null;
  stopSocket();
  showTokenBox("token_rejected");
  setConn("disconnected");
}

function authHeaders() {
  const h = { "Accept": "application/json" };
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function probeAuth() {
  // Returns "ok", "unauthorized" or "unreachable".
  try {
    const r = await fetch("/api/alerts?open=true", { headers: authHeaders(), cache: "no-store" });
    if (r.status === 401) return "unauthorized";
    return "ok";
  } catch (e) {
    return "unreachable";
  }
}

function start() {
  token = takeTokenFromUrl();
  if (!token) {
    showTokenBox(null);
    setConn("disconnected");
    return;
  }
  // A bad token shows up as a failed websocket handshake, which is then checked over REST (probeAuth).
  hideTokenBox();
  stopped = false;
  connect();
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
  if (token) params.set("token", token);
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
  };
  sock.onmessage = (ev) => {
    if (ws !== sock) return;
    wsGotMessage = true;
    lastLiveAt = Date.now();
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { console.warn("lifeline: non-JSON websocket message ignored"); return; }
    handleMessage(msg);
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
    if (lastSeq !== null && Number.isFinite(seq) && seq <= lastSeq) return; // already seen
    if (Number.isFinite(seq)) lastSeq = seq;
    applyEvent(msg.event, msg.alert);
    seqDirty = true;
  } else if (msg.error) {
    console.warn("lifeline: server error on websocket:", msg.error);
  }
}

function applySnapshot(msg) {
  const wasLoaded = haveSnapshot;
  const before = new Set(alerts.keys());
  for (const id of alerts.keys()) dirty.add(id);
  alerts.clear();
  const list = Array.isArray(msg.alerts) ? msg.alerts : [];
  let newRed = null;
  for (const a of list) {
    if (!a || !a.id || a.workflow === "closed") continue;
    alerts.set(a.id, a);
    dirty.add(a.id);
    if (a.domain && !knownDomains.has(a.domain)) domainsChanged = true;
    // After a reset, red alerts we had never seen are new to this operator.
    if (wasLoaded && !before.has(a.id) && a.level === "red") {
      flashUntil.set(a.id, Date.now() + FLASH_MS);
      newRed = a;
    }
  }
  const seq = Number(msg.seq);
  lastSeq = Number.isFinite(seq) ? seq : lastSeq;
  haveSnapshot = true;
  needsResort = true;
  if (newRed) alarm(newRed);
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
    if (becameRed) {
      flashUntil.set(a.id, Date.now() + FLASH_MS);
      alarm(a);
    } else if (event === "raised" || event === "escalated") {
      freshIds.add(a.id);
    }
    if (a.domain && !knownDomains.has(a.domain)) domainsChanged = true;
  }
  if (!prev || !a || prev.level !== a.level || prev.raised_at !== a.raised_at || !alerts.has(a.id)) needsResort = true;
  dirty.add(a.id);
  schedule();
}

// ---------------------------------------------------------------- sound
let audioCtx = null;
let muted = lsGet(STORE.muted, "false") === "true";

function getAudio() {
  if (!audioCtx) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    try { audioCtx = new AC(); } catch (e) { return null; }
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
function alarm(a) {
  beep();
  toast(t("new_red", { id: a.id, asset: a.asset || a.sensor || "", message: a.message || "" }), "red", 8000);
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

// ---------------------------------------------------------------- rendering
function schedule() {
  if (rafPending) return;
  rafPending = true;
  requestAnimationFrame(render);
}

function visible(a) {
  if (filters.domain && a.domain !== filters.domain) return false;
  if (filters.level && a.level !== filters.level) return false;
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
      if (!row || !row.isConnected || flashUntil.has(id) || typeof row.animate !== "function") continue;
      if (row._fresh) row._fresh.cancel();
      row._fresh = row.animate([{ backgroundColor: "rgba(79, 195, 247, 0.30)" }, {}], { duration: 2200, easing: "ease-out" });
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
  updateFlashes();
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
  cAge.append(c.age);
  c.domain = el("div", "cell c-domain");
  const cAsset = el("div", "cell c-asset");
  c.asset = el("span", "asset");
  c.sensor = el("span", "sensor");
  cAsset.append(c.asset, c.sensor);
  c.metric = el("div", "cell c-metric");
  c.valueCell = el("div", "cell c-value");
  c.value = el("span", "value");
  c.threshold = el("span", "threshold");
  c.valueCell.append(c.value, c.threshold);
  const cMsg = el("div", "cell c-msg");
  c.message = el("span", "message");
  c.alertId = el("span", "alert-id");
  cMsg.append(c.message, c.alertId);
  const cCond = el("div", "cell c-cond");
  c.cond = el("span", "cond-pill");
  cCond.append(c.cond);
  const cWf = el("div", "cell c-wf");
  c.wf = el("span", "wf-pill");
  cWf.append(c.wf);
  const cAct = el("div", "cell c-actions");
  c.bAck = el("button", "btn btn-ack");
  c.bAck.type = "button"; c.bAck.dataset.testid = "btn-ack"; c.bAck.dataset.action = "ack";
  c.bDis = el("button", "btn btn-dispatch");
  c.bDis.type = "button"; c.bDis.dataset.testid = "btn-dispatch"; c.bDis.dataset.action = "dispatch";
  c.bClose = el("button", "btn btn-close");
  c.bClose.type = "button"; c.bClose.dataset.testid = "btn-close"; c.bClose.dataset.action = "close";
  cAct.append(c.bAck, c.bDis, c.bClose);

  main.append(cLevel, cAge, c.domain, cAsset, c.metric, c.valueCell, cMsg, cCond, cWf, cAct);
  const formSlot = el("div", "row-form-slot");
  const err = el("div", "row-error");
  err.setAttribute("role", "alert");
  err.hidden = true;
  row.append(main, formSlot, err);
  row._c = c;
  return row;
}

function labelOr(prefix, value) {
  const k = prefix + value;
  const s = t(k);
  return s === k ? String(value || "") : s;
}

function updateRow(row, a) {
  const c = row._c;
  const level = LEVEL_RANK[a.level] === undefined ? "unknown" : a.level;
  setAttr(row, "data-level", level);
  setAttr(row, "data-domain", a.domain || "");
  setAttr(row, "data-condition", a.condition || "");
  setAttr(row, "data-workflow", a.workflow || "");
  setAttr(row, "data-peak-level", a.peak_level || a.level || "");
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

  updateAge(row, a);
  setText(c.domain, domainName(a.domain));
  setText(c.asset, a.asset || "—");
  setText(c.sensor, a.sensor || "");
  setText(c.metric, a.metric || "");
  setText(c.value, fmtNum(a.value));
  setText(c.threshold, t("threshold_short") + " " + fmtNum(a.threshold));
  setAttr(c.valueCell, "title", t("updated_at", { time: fmtTime(Number(a.updated_at)) }));
  setText(c.message, a.message || "");
  setAttr(c.message, "title", a.message || "");
  setText(c.alertId, a.id);
  setAttr(c.alertId, "title", a.rule || "");

  setText(c.cond, labelOr("cond_", a.condition));
  setAttr(c.cond, "data-condition", a.condition || "");
  setText(c.wf, labelOr("wf_", a.workflow));
  setAttr(c.wf, "data-workflow", a.workflow || "");

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

function updateAge(row, a) {
  const ra = Number(a.raised_at);
  const age = row._c.age;
  if (!Number.isFinite(ra)) { setText(age, "—"); return; }
  setText(age, fmtAge(Date.now() - ra));
  if (age._ra !== ra) { age._ra = ra; age._lang = null; }
  if (age._lang !== lang) { age._lang = lang; age.title = t("raised_at", { time: fmtTime(ra) }); }
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
      if (row) { row.classList.remove("flash"); delete row.dataset.flash; }
    } else if (row && !row.classList.contains("flash")) {
      row.classList.add("flash");
      row.dataset.flash = "1";
    }
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
  const total = alerts.size;
  const tot = $("#count-total");
  setAttr(tot, "data-count", total);
  setText(tot.querySelector(".chip-num"), total);

  const empty = $("#board-empty");
  const state = !haveSnapshot ? "waiting" : total === 0 ? "none" : shown === 0 ? "filtered" : "hidden";
  setAttr(empty, "data-state", state);
  empty.hidden = state === "hidden";
  setText(empty.querySelector(".empty-text"),
    state === "waiting" ? t("empty_waiting") : state === "none" ? t("empty_none") : state === "filtered" ? t("empty_filtered") : "");
  setText($("#status-shown"), haveSnapshot ? t("shown", { shown, total }) : "");
  document.title = (counts.red ? "(" + counts.red + ") " : "") + t("product");
}

function updateSeqDisplay() {
  const board = $("#board");
  setAttr(board, "data-last-seq", lastSeq === null ? "" : lastSeq);
  setAttr(board, "data-ready", haveSnapshot ? "true" : "false");
  setText($("#status-seq"), lastSeq === null ? "" : t("seq", { seq: lastSeq }));
}

// ---------------------------------------------------------------- connection display
function setConn(state) {
  connState = state;
  const box = $("#conn-state");
  setAttr(box, "data-state", state);
  setText(box.querySelector(".conn-text"), t("conn_" + state));
  document.body.dataset.conn = state;
  updateBanner();
}

function updateBanner() {
  const banner = $("#conn-banner");
  const show = !stopped && connState !== "connected" && (everConnected || attempts > 1 || connState === "disconnected");
  banner.hidden = !show;
  $("#board").classList.toggle("stale", show && haveSnapshot);
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

async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (e) {
    return { ok: false, status: 0, error: t("err_network", { msg: e && e.message ? e.message : String(e) }) };
  }
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.ok) return { ok: true, status: r.status, data };
  if (r.status === 401) { authRejected(); return { ok: false, status: 401, error: t("token_rejected") }; }
  const serverMsg = serverError(data) || r.statusText || "";
  let error;
  if (r.status === 403) error = t("err_forbidden") + (serverMsg ? " (" + serverMsg + ")" : "");
  else if (r.status === 404) error = t("err_not_found");
  else if (r.status === 409) error = t("err_prefix", { msg: serverMsg || t("close_still_active") });
  else error = t("err_http", { status: r.status, msg: serverMsg });
  return { ok: false, status: r.status, error, serverMsg };
}
function serverError(data) {
  if (!data) return "";
  if (typeof data.error === "string") return data.error;
  if (typeof data.detail === "string") return data.detail;
  if (data.detail && typeof data.detail.error === "string") return data.detail.error;
  if (Array.isArray(data.detail) && data.detail.length && data.detail[0].msg) return data.detail.map((d) => d.msg).join("; ");
  return "";
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
  const btn = e.target.closest("button[data-action]");
  if (!btn || btn.disabled) return;
  const row = btn.closest(".alert-row");
  if (!row) return;
  const action = btn.dataset.action;
  if (action === "ack") doAction(row, "ack");
  else if (!operatorName()) requireOperator();
  else openForm(row, action);
}

// ---------------------------------------------------------------- toasts
function toast(text, kind, ms) {
  const box = $("#toasts");
  const n = el("div", "toast toast-" + (kind || "info"), text);
  box.append(n);
  while (box.children.length > 5) box.firstElementChild.remove();
  setTimeout(() => { n.classList.add("leaving"); setTimeout(() => n.remove(), 400); }, ms || 3500);
}

// ---------------------------------------------------------------- header, filters, language
function fillFilters() {
  const dSel = $("#filter-domain");
  const lSel = $("#filter-level");
  for (const a of alerts.values()) if (a.domain) knownDomains.add(a.domain);
  const domains = Array.from(knownDomains);
  dSel.replaceChildren(opt("", t("all_domains")), ...domains.map((d) => opt(d, domainName(d))));
  lSel.replaceChildren(opt("", t("all_levels")), ...LEVELS.map((l) => opt(l, levelLabel(l))));
  dSel.value = filters.domain;
  lSel.value = filters.level;
}
function opt(value, label) { const o = el("option", null, label); o.value = value; return o; }

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
  for (const n of document.querySelectorAll("[data-i18n-placeholder]")) n.placeholder = t(n.dataset.i18nPlaceholder);
  for (const n of document.querySelectorAll("[data-i18n-aria]")) n.setAttribute("aria-label", t(n.dataset.i18nAria));
  const lt = $("#lang-toggle");
  lt.textContent = t("lang_button");
  lt.title = t("lang_button_title");
  lt.dataset.lang = lang;
  lt.lang = lang === "zh-CN" ? "en" : "zh-CN";  // the button names the other language
  $("#token-change").title = t("change_token_title");
  setText($("#product-name"), t("product"));
  fillFilters();
  setConn(connState);
  updateSoundStatus();
  updateSeqDisplay();
  const err = $("#token-error");
  if (!err.hidden && err.dataset.reason) err.textContent = t(err.dataset.reason);
  for (const row of rows.values()) if (row._alert) updateRow(row, row._alert);
  needsResort = true;
  schedule();
  tickClock();
}

function tickClock() {
  const now = new Date();
  setText($("#clock .clock-time"), pad2(now.getHours()) + ":" + pad2(now.getMinutes()) + ":" + pad2(now.getSeconds()));
  const wd = now.toLocaleDateString(lang, { weekday: "short" });
  setText($("#clock .clock-date"), now.getFullYear() + "-" + pad2(now.getMonth() + 1) + "-" + pad2(now.getDate()) + " " + wd);
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
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    lsSet(STORE.lang, lang);
    applyLanguage();
  });
  $("#token-change").addEventListener("click", () => {
    stopSocket();
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
    ssSet(STORE.token, v);
    hideTokenBox();
    // A new token may see a different set of alerts: start from a fresh snapshot.
    lastSeq = null;
    haveSnapshot = false;
    seqDirty = true;
    for (const id of alerts.keys()) dirty.add(id);
    alerts.clear();
    needsResort = true;
    schedule();
    start();
  });
  $("#filter-domain").addEventListener("change", (e) => { filters.domain = e.target.value; needsResort = true; schedule(); });
  $("#filter-level").addEventListener("change", (e) => { filters.level = e.target.value; needsResort = true; schedule(); });
  for (const lv of LEVELS) {
    $("#count-" + lv).addEventListener("click", () => {
      filters.level = filters.level === lv ? "" : lv;
      $("#filter-level").value = filters.level;
      needsResort = true;
      schedule();
    });
  }
  $("#board").addEventListener("click", onBoardClick);
  // Browsers only allow audio after a user gesture: unlock on the first interaction.
  const unlock = () => { if (!muted) unlockAudio(); };
  document.addEventListener("pointerdown", unlock, { capture: true });
  document.addEventListener("keydown", unlock, { capture: true });
}

function init() {
  wireUi();
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
  I18N
};

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();

})();
