/* Sensor and asset detail: the catalogue entry, data quality (last reading, status, the
 * gateway's state and rejections), a live chart of every metric with its threshold bands,
 * the sensor's alerts with their transitions, and the other sensors on the same asset.
 * While open it refreshes every REFRESH_MS; alert events for the sensor refresh its alert list.
 */

import { get } from "./api.js";
import { el, setAttr, setText } from "./dom.js";
import { MetricChart, levelOf } from "./chart.js";
import {
  LEVEL_RANK, domainName, fmtAge, fmtNum, fmtTime, labelOr, levelLabel, levelName, t
} from "./i18n.js";

const REFRESH_MS = 5000;
const REJECTIONS_EVERY = 3;  // refreshes
const WINDOWS = [["15m", 15 * 60000], ["1h", 3600000], ["6h", 6 * 3600000], ["24h", 24 * 3600000]];
const WINDOW_KEY = "lifeline.detailWindow";

export class SensorDetail {
  /** deps: {sensor(id), siblings(sensor), gateway(id), districtName(id), openAlerts(sensorId), onClose(), onSelect(id)} */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    this.id = null;
    this.sensor = null;
    this.rules = [];
    this.charts = new Map();  // metric -> {chart, card}
    this.alerts = [];
    this.rejections = null;
    this.timer = null;
    this.ticks = 0;
    this.generation = 0;
    this.alertTimer = null;
    let stored = null;
    try { stored = localStorage.getItem(WINDOW_KEY); } catch (e) { /* ignore */ }
    this.windowKey = WINDOWS.some(([k]) => k === stored) ? stored : "1h";
    this._build();
  }

  get sensorId() { return this.id; }
  get isOpen() { return this.id !== null; }

  _build() {
    const r = this.root;
    r.replaceChildren();
    const head = el("div", "detail-head");
    this.headLevel = el("span", "detail-level");
    const titles = el("div", "detail-titles");
    this.kicker = el("div", "detail-kicker");
    this.title = el("h2", "detail-title");
    this.title.id = "detail-title";
    titles.append(this.kicker, this.title);
    this.closeBtn = el("button", "icon-btn detail-close");
    this.closeBtn.id = "detail-close";
    this.closeBtn.type = "button";
    this.closeBtn.innerHTML = '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M3.5 3.5l9 9M12.5 3.5l-9 9" stroke="currentColor" stroke-width="1.8" fill="none"/></svg>';
    this.closeBtn.addEventListener("click", () => this.deps.onClose());
    head.append(this.headLevel, titles, this.closeBtn);

    this.body = el("div", "detail-body");
    this.facts = el("dl", "facts");
    this.quality = this._section("detail_quality", "detail-quality");
    this.qualityGrid = el("div", "q-grid");
    this.rejList = el("div", "q-rejections");
    this.quality.append(this.qualityGrid, this.rejList);

    this.metrics = this._section("detail_metrics", "detail-metrics");
    this.windowSeg = el("div", "seg");
    this.windowSeg.id = "detail-window";
    this.windowSeg.setAttribute("role", "group");
    for (const [key] of WINDOWS) {
      const b = el("button", "seg-btn");
      b.type = "button";
      b.dataset.window = key;
      b.addEventListener("click", () => {
        this.windowKey = key;
        try { localStorage.setItem(WINDOW_KEY, key); } catch (e) { /* ignore */ }
        this._paintWindow();
        this._loadSeries();
      });
      this.windowSeg.append(b);
    }
    this.metrics.querySelector(".d-section-head").append(this.windowSeg);
    this.metricList = el("div", "metric-list");
    this.metrics.append(this.metricList);

    this.alertsSec = this._section("detail_alerts", "detail-alerts");
    this.alertList = el("ol", "d-alert-list");
    this.alertsSec.append(this.alertList);

    this.siblingsSec = this._section(null, "detail-siblings");
    this.siblingList = el("div", "sibling-list");
    this.siblingsSec.append(this.siblingList);

    this.message = el("div", "detail-message");
    this.message.hidden = true;
    this.body.append(this.facts, this.message, this.quality, this.metrics, this.alertsSec, this.siblingsSec);
    r.append(head, this.body);
  }

  _section(titleKey, id) {
    const s = el("section", "d-section");
    s.id = id;
    const h = el("div", "d-section-head");
    const h3 = el("h3");
    if (titleKey) h3.dataset.i18n = titleKey;
    h.append(h3);
    s.append(h);
    return s;
  }

  // ------------------------------------------------------------------ lifecycle
  open(id) {
    if (this.id === id && !this.root.hidden) return;
    this.generation += 1;
    this.id = id;
    this.sensor = this.deps.sensor(id) || null;
    this.rules = [];
    this.alerts = [];
    this.rejections = null;
    this.ticks = 0;
    this.charts.clear();
    this.metricList.replaceChildren();
    this.alertList.replaceChildren();
    setAttr(this.root, "data-sensor-id", id);
    setAttr(this.root, "data-ready", "false");
    this.root.hidden = false;
    this.body.scrollTop = 0;
    this._paint();
    this._load(this.generation);
    clearInterval(this.timer);
    this.timer = setInterval(() => { if (!document.hidden) this._refresh(); }, REFRESH_MS);
  }

  close() {
    this.generation += 1;
    this.id = null;
    clearInterval(this.timer);
    this.timer = null;
    this.root.hidden = true;
    setAttr(this.root, "data-sensor-id", "");
    setAttr(this.root, "data-ready", "false");
  }

  /** An alert event concerned this sensor: reload its alert list soon (coalesced). */
  alertChanged() {
    if (!this.id || this.alertTimer) return;
    this.alertTimer = setTimeout(() => { this.alertTimer = null; this._loadAlerts(this.generation); }, 400);
  }

  applyLanguage() {
    for (const n of this.root.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
    this.closeBtn.title = t("detail_close_title");
    this.closeBtn.setAttribute("aria-label", t("detail_close"));
    this.siblingList._sig = null;
    if (this.id) { this._paint(); this._paintAlerts(); for (const c of this.charts.values()) c.chart.draw(); }
  }

  async _load(gen) {
    const id = encodeURIComponent(this.id);
    const [sensor, rules] = await Promise.all([get("/api/sensors/" + id), get("/api/sensors/" + id + "/rules")]);
    if (gen !== this.generation) return;
    if (!sensor.ok) {
      this.message.hidden = false;
      setText(this.message, sensor.status === 404 ? t("detail_not_found") : sensor.error);
      return;
    }
    this.sensor = sensor.data;
    this.rules = rules.ok ? rules.data.rules : [];
    this._paint();
    this._buildCharts();
    await Promise.all([this._loadSeries(), this._loadAlerts(gen), this._loadRejections(gen)]);
    if (gen !== this.generation) return;
    setAttr(this.root, "data-ready", "true");
  }

  async _refresh() {
    const gen = this.generation;
    this.ticks += 1;
    const res = await get("/api/sensors/" + encodeURIComponent(this.id));
    if (gen !== this.generation) return;
    if (res.ok) { this.sensor = res.data; this._paint(); }
    await this._loadSeries();
    if (this.ticks % REJECTIONS_EVERY === 0) await this._loadRejections(gen);
  }

  // ------------------------------------------------------------------ loading
  async _loadSeries() {
    const gen = this.generation;
    const span = WINDOWS.find(([k]) => k === this.windowKey)[1];
    const until = Date.now(), since = until - span;
    const s = this.sensor;
    const jobs = [...this.charts.entries()].map(async ([metric, c]) => {
      const points = Math.max(100, Math.min(1500, Math.round(c.canvas.clientWidth || 500)));
      const res = await get("/api/sensors/" + encodeURIComponent(this.id) + "/series?metric=" + encodeURIComponent(metric) +
        "&since=" + since + "&until=" + until + "&points=" + points);
      if (gen !== this.generation || !res.ok) return;
      const d = res.data;
      const gap = Math.max((Number(s && s.interval) || 60) * 1000 * 3, (d.bucket_ms || 0) * 3);
      c.chart.setSeries(d, since, until, gap);
      setAttr(c.canvas, "data-points", d.ts.length);
      setText(c.foot, d.bucket_ms ? t("chart_buckets", { n: d.count, bucket: fmtAge(d.bucket_ms) }) : t("chart_points", { n: d.count }));
    });
    await Promise.all(jobs);
  }

  async _loadAlerts(gen) {
    if (!this.id) return;
    const res = await get("/api/sensors/" + encodeURIComponent(this.id) + "/alerts?limit=20");
    if (gen !== this.generation || !res.ok) return;
    this.alerts = res.data;
    this._paintAlerts();
    this._paint();
  }

  async _loadRejections(gen) {
    const s = this.sensor;
    if (!s || !s.gateway) return;
    const res = await get("/api/rejections?gateway=" + encodeURIComponent(s.gateway) + "&limit=200");
    if (gen !== this.generation || !res.ok) return;
    this.rejections = res.data.filter((r) => r.sensor === s.id);
    this._paintQuality();
  }

  // ------------------------------------------------------------------ painting
  /** Repaint the header, facts and quality (after alert changes or new gateway figures). */
  paint() { if (this.id) this._paint(); }
  paintQuality() { if (this.id) this._paintQuality(); }

  _worstLevel() {
    let worst = null;
    for (const a of this.deps.openAlerts(this.id)) {
      if (LEVEL_RANK[a.level] !== undefined && (worst === null || LEVEL_RANK[a.level] < LEVEL_RANK[worst])) worst = a.level;
    }
    return worst;
  }

  _paint() {
    const s = this.sensor;
    setText(this.title, this.id || "");
    const level = this._worstLevel();
    setAttr(this.headLevel, "data-level", level || "none");
    setText(this.headLevel, level ? levelLabel(level) : t("legend_normal"));
    setAttr(this.root, "data-level", level || "none");
    if (!s) { setText(this.kicker, t("detail_loading")); return; }
    setText(this.kicker, domainName(s.domain) + " · " + (s.type || ""));
    const loc = s.location || {};
    const facts = [
      ["detail_asset", s.asset || "—"],
      ["detail_district", s.district ? this.deps.districtName(s.district) : "—"],
      ["detail_owner", s.owner || "—"],
      ["detail_gateway", s.gateway || "—"],
      ["detail_interval", t("detail_interval_value", { n: fmtNum(s.interval) })],
      ["detail_location", Number.isFinite(loc.lon) ? loc.lon.toFixed(5) + ", " + loc.lat.toFixed(5) : "—"]
    ];
    if (this.facts.childElementCount !== facts.length * 2) {
      this.facts.replaceChildren(...facts.flatMap(([k]) => { const dt = el("dt"); dt.dataset.key = k; return [dt, el("dd")]; }));
    }
    facts.forEach(([k, v], i) => {
      setText(this.facts.children[i * 2], t(k));
      setText(this.facts.children[i * 2 + 1], v);
    });
    this._paintQuality();
    this._paintMetricHeads();
    this._paintSiblings();
    this._paintWindow();
  }

  _paintQuality() {
    const s = this.sensor;
    if (!s) return;
    const gw = this.deps.gateway(s.gateway);
    const items = [];
    const status = s.status || "no_data";
    items.push(["detail_status", labelOr("status_", status), "status-" + status]);
    items.push(["detail_last_seen", s.last_seen ? t("ago", { age: fmtAge(Date.now() - s.last_seen) }) : t("detail_never"),
      s.last_seen ? fmtTime(s.last_seen) : ""]);
    if (gw) {
      items.push(["detail_gateway_state", labelOr("gw_", gw.status) + " · " + gw.id, "gw-" + gw.status]);
      const reasons = Object.entries(gw.rejections || {}).sort((a, b) => b[1] - a[1])
        .map(([r, n]) => labelOr("reason_", r) + " " + n).join(" · ");
      items.push(["detail_rejections", String(gw.rejected || 0), reasons || t("detail_no_rejections")]);
    }
    this.qualityGrid.replaceChildren(...items.map(([k, v, extra]) => {
      const box = el("div", "q-item");
      box.dataset.key = k;
      const val = el("span", "q-value", v);
      if (k === "detail_status" || k === "detail_gateway_state") { val.classList.add("q-pill"); val.dataset.state = extra; }
      box.append(el("span", "q-label", t(k)), val);
      if (extra && k !== "detail_status" && k !== "detail_gateway_state") box.append(el("span", "q-extra", extra));
      if (k === "detail_rejections" && gw && gw.rejected) box.classList.add("warn");
      return box;
    }));
    setAttr(this.quality, "data-status", status);
    const rej = this.rejections;
    if (rej && rej.length) {
      this.rejList.hidden = false;
      this.rejList.replaceChildren(el("div", "q-label", t("detail_sensor_rejections") + " (" + rej.length + ")"),
        ...rej.slice(0, 3).map((r) => {
          const row = el("div", "q-rej");
          row.append(el("span", "q-rej-time", fmtTime(r.received_at)), el("span", "q-rej-reason", labelOr("reason_", r.reason)),
            el("span", "q-rej-detail", r.detail || ""));
          return row;
        }));
    } else {
      this.rejList.hidden = true;
    }
  }

  _buildCharts() {
    const s = this.sensor;
    this.metricList.replaceChildren();
    this.charts.clear();
    for (const [metric, unit] of Object.entries(s.metrics || {})) {
      const card = el("div", "metric-card");
      card.dataset.metric = metric;
      const head = el("div", "metric-head");
      const name = el("span", "metric-name", metric);
      const unitEl = el("span", "metric-unit", unit);
      const last = el("span", "metric-last");
      const rule = el("span", "metric-rule");
      head.append(name, unitEl, rule, last);
      const canvas = el("canvas", "metric-chart");
      canvas.dataset.metric = metric;
      const foot = el("div", "metric-foot");
      card.append(head, canvas, foot);
      this.metricList.append(card);
      const chart = new MetricChart(canvas);
      chart.setRules(this.rules.filter((r) => r.metric === metric));
      this.charts.set(metric, { chart, card, canvas, last, rule, foot, unit });
    }
    this._paintMetricHeads();
  }

  _paintMetricHeads() {
    const s = this.sensor;
    for (const [metric, c] of this.charts) {
      const v = s && s.values && s.values[metric];
      const rules = this.rules.filter((r) => r.metric === metric);
      const level = v ? levelOf(v.value, rules) : null;
      setText(c.last, v ? fmtNum(v.value) + " " + c.unit : "—");
      setAttr(c.last, "data-level", level || "none");
      setAttr(c.last, "title", v ? fmtTime(v.ts) : "");
      setText(c.rule, rules.map((r) => r.id).join(", "));
      setAttr(c.card, "data-level", level || "none");
    }
  }

  _paintWindow() {
    for (const b of this.windowSeg.children) {
      setText(b, t("window_" + b.dataset.window));
      b.classList.toggle("active", b.dataset.window === this.windowKey);
      setAttr(b, "aria-pressed", b.dataset.window === this.windowKey ? "true" : "false");
    }
  }

  _paintSiblings() {
    const s = this.sensor;
    if (!s) return;
    const others = this.deps.siblings(s).filter((x) => x.id !== s.id);
    setText(this.siblingsSec.querySelector("h3"), t("detail_siblings", { asset: s.asset || "—" }));
    const sig = others.map((x) => x.id + ":" + (this.deps.openAlerts(x.id)[0] || {}).level).join(",");
    if (this.siblingList._sig === sig) return;
    this.siblingList._sig = sig;
    if (!others.length) { this.siblingList.replaceChildren(el("span", "muted", t("detail_no_siblings"))); return; }
    this.siblingList.replaceChildren(...others.slice(0, 40).map((x) => {
      const b = el("button", "sibling");
      b.type = "button";
      b.dataset.sensorId = x.id;
      let worst = null;
      for (const a of this.deps.openAlerts(x.id)) if (worst === null || LEVEL_RANK[a.level] < LEVEL_RANK[worst]) worst = a.level;
      b.dataset.level = worst || "none";
      b.append(el("span", "sib-dot"), el("span", "sib-id", x.id), el("span", "sib-type", x.type || ""));
      b.addEventListener("click", () => this.deps.onSelect(x.id));
      return b;
    }));
  }

  _paintAlerts() {
    const list = this.alerts;
    if (!list.length) {
      this.alertList.replaceChildren(el("li", "d-empty", t("detail_no_alerts")));
      return;
    }
    this.alertList.replaceChildren(...list.map((a, k) => {
      const li = el("li", "d-alert");
      li.dataset.alertId = a.id;
      li.dataset.level = a.level;
      li.dataset.open = a.workflow !== "closed" ? "true" : "false";
      const head = el("div", "d-alert-head");
      const badge = el("span", "level-badge small", levelName(a.level));
      badge.dataset.level = a.level;
      head.append(badge, el("span", "d-alert-id", a.id), el("span", "d-alert-msg", a.message || ""));
      const meta = el("div", "d-alert-meta");
      const cond = el("span", "cond-pill small", labelOr("cond_", a.condition));
      cond.dataset.condition = a.condition;
      const wf = el("span", "wf-pill small", labelOr("wf_", a.workflow));
      wf.dataset.workflow = a.workflow;
      meta.append(cond, wf, el("span", "muted", t("raised_at", { time: fmtTime(a.raised_at) })));
      const hist = el("ol", "history");
      for (const h of a.history || []) {
        const row = el("li", "h-row");
        row.dataset.event = h.event;
        row.dataset.level = h.level || "";
        const who = h.by ? t("history_by", { by: h.by }) : "";
        row.append(el("span", "h-time", fmtTime(h.at)), el("span", "h-event", labelOr("ev_", h.event)),
          el("span", "h-level", h.level ? levelName(h.level) + (h.value !== null && h.value !== undefined ? " " + fmtNum(h.value) : "") : ""),
          el("span", "h-by", [who, h.to ? t("history_to", { to: h.to }) : "", h.note || ""].filter(Boolean).join(" · ")));
        hist.append(row);
      }
      const details = el("details", "d-alert-body");
      details.open = a.workflow !== "closed" || k === 0;
      const summary = el("summary");
      summary.append(head, meta);
      details.append(summary, hist);
      li.append(details);
      return li;
    }));
  }
}

export function closeOnEscape(detail, close) {
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || !detail.isOpen) return;
    const active = document.activeElement;
    if (active && active.closest && active.closest(".inline-form, #token-box")) return;
    close();
  });
}

