/* The status bar: readings per second (from two samples of GET /api/status), open alerts by
 * level (live, from the board), gateways online/offline with their rejection counts (GET
 * /api/gateways, also listed in a panel), MQTT subscription, and the live link's state.
 */

import { get } from "./api.js";
import { $, el, setAttr, setText } from "./dom.js";
import { LEVELS, fmtAge, fmtNum, fmtTime, labelOr, t } from "./i18n.js";

const STATUS_MS = 2000;
const GATEWAYS_MS = 5000;
const RATE_WINDOW_MS = 10000;

export class StatusBar {
  constructor() {
    this.samples = [];       // [{at, readings}] within RATE_WINDOW_MS
    this.status = null;
    this.statusAt = 0;
    this.gateways = [];
    this.byId = new Map();
    this.timers = [];
    this.listeners = [];
    this.rate = null;
    $("#status-gateways").addEventListener("click", () => this.togglePanel());
    $("#gateway-close").addEventListener("click", () => this.togglePanel(false));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") this.togglePanel(false); });
  }

  onGateways(fn) { this.listeners.push(fn); }
  gateway(id) { return this.byId.get(id) || null; }

  start() {
    this.stop();
    this.pollStatus();
    this.pollGateways();
    this.timers.push(setInterval(() => { if (!document.hidden) this.pollStatus(); }, STATUS_MS));
    this.timers.push(setInterval(() => { if (!document.hidden) this.pollGateways(); }, GATEWAYS_MS));
  }
  stop() { for (const id of this.timers) clearInterval(id); this.timers = []; }

  async pollStatus() {
    const res = await get("/api/status");
    if (!res.ok) { this.paintStatus(); return; }
    const s = res.data;
    this.status = s;
    this.statusAt = Date.now();
    this.samples.push({ at: s.at, readings: s.readings });
    while (this.samples.length > 2 && s.at - this.samples[0].at > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0];
    if (this.samples.length >= 2 && s.at > first.at) {
      // A restarted service counts from zero again: start the window over.
      if (s.readings < first.readings) { this.samples = [{ at: s.at, readings: s.readings }]; this.rate = null; }
      else this.rate = ((s.readings - first.readings) * 1000) / (s.at - first.at);
    }
    this.paintStatus();
  }

  async pollGateways() {
    const res = await get("/api/gateways");
    if (!res.ok) return;
    this.gateways = res.data;
    this.byId = new Map(res.data.map((g) => [g.id, g]));
    this.paintGateways();
    for (const fn of this.listeners) fn(this.gateways);
  }

  /** Live link state mirrored from the websocket (connected | connecting | disconnected). */
  setLink(state, seq) {
    const box = $("#status-ws");
    setAttr(box, "data-state", state);
    setText(box.querySelector(".sb-val"), t("conn_" + state));
    setAttr(box, "title", seq === null || seq === undefined ? "" : t("seq", { seq }));
  }

  /** Open alerts by level, from the board's own state (always live). */
  setLevels(counts) {
    const box = $("#status-levels");
    for (const lv of LEVELS) {
      const b = box.querySelector(".lv-" + lv);
      setText(b, counts[lv] || 0);
      b.classList.toggle("zero", !counts[lv]);
    }
  }

  paintStatus() {
    const s = this.status;
    const stale = !s || Date.now() - this.statusAt > STATUS_MS * 3;
    const rate = $("#status-rate");
    rate.classList.toggle("stale", stale);
    setText(rate.querySelector(".sb-val"), stale || this.rate === null ? t("sb_unknown") : t("sb_rate", { n: fmtRate(this.rate) }));
    setAttr(rate, "data-rate", stale || this.rate === null ? "" : this.rate.toFixed(2));
    setAttr(rate, "title", s ? (stale ? t("sb_stale", { age: fmtAge(Date.now() - this.statusAt) }) + " · " : "") +
      t("sb_readings") + " " + s.readings : "");
    const rej = $("#status-rejected");
    setText(rej.querySelector(".sb-val"), s ? String(s.rejected) : t("sb_unknown"));
    rej.classList.toggle("warn", !!(s && s.rejected));
    rej.classList.toggle("stale", stale);
    const mq = $("#status-mqtt");
    setAttr(mq, "data-state", !s ? "unknown" : s.subscribed ? "ok" : "down");
    setText(mq.querySelector(".sb-val"), !s ? t("sb_unknown") : s.subscribed ? t("sb_mqtt_ok") : t("sb_mqtt_down"));
    mq.classList.toggle("stale", stale);
  }

  paintGateways() {
    const known = this.gateways.filter((g) => g.known);
    const online = known.filter((g) => g.status === "online").length;
    const offline = known.filter((g) => g.status === "offline").length;
    const noData = known.filter((g) => g.status === "no_data").length;
    const btn = $("#status-gateways");
    setAttr(btn, "data-online", online);
    setAttr(btn, "data-offline", offline);
    setText(btn.querySelector(".gw-online"), t("sb_online", { n: online }));
    setText(btn.querySelector(".gw-offline"), t("sb_offline", { n: offline }));
    btn.querySelector(".gw-offline").classList.toggle("zero", offline === 0);
    setText(btn.querySelector(".gw-nodata"), noData ? t("sb_no_data", { n: noData }) : "");
    if (!$("#gateway-panel").hidden) this.paintPanel();
  }

  togglePanel(force) {
    const panel = $("#gateway-panel");
    const show = force === undefined ? panel.hidden : force;
    panel.hidden = !show;
    setAttr($("#status-gateways"), "aria-expanded", show ? "true" : "false");
    if (show) this.paintPanel();
  }

  paintPanel() {
    const body = $("#gateway-rows");
    const order = { offline: 0, no_data: 1, unknown: 2, online: 3 };
    const rows = this.gateways.slice().sort((a, b) => (order[a.status] - order[b.status]) || (b.rejected - a.rejected) || (a.id < b.id ? -1 : 1));
    body.replaceChildren(...rows.map((g) => {
      const tr = el("tr");
      tr.dataset.gateway = g.id;
      tr.dataset.status = g.status;
      const state = el("span", "gw-state", labelOr("gw_", g.status));
      state.dataset.status = g.status;
      const reasons = Object.entries(g.rejections || {}).sort((a, b) => b[1] - a[1])
        .map(([r, n]) => labelOr("reason_", r) + " " + n).join(" · ");
      const cells = [
        [state], [el("span", "mono", g.id)], [g.owner || "—"],
        [g.last_seen ? t("ago", { age: fmtAge(Date.now() - g.last_seen) }) : "—", g.last_seen ? fmtTime(g.last_seen) : ""],
        [g.known ? g.reporting + " / " + g.sensors : "—"],
        [String(g.rejected || 0), reasons]
      ];
      for (const [content, title] of cells) {
        const td = el("td");
        if (typeof content === "string") td.textContent = content; else td.append(content);
        if (title) td.title = title;
        tr.append(td);
      }
      if (g.rejected) tr.lastElementChild.classList.add("warn");
      return tr;
    }));
  }

  applyLanguage() {
    this.paintStatus();
    this.paintGateways();
    if (!$("#gateway-panel").hidden) this.paintPanel();
  }
}

function fmtRate(r) {
  if (r >= 100) return String(Math.round(r));
  return fmtNum(Math.round(r * 10) / 10);
}
