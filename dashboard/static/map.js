/* The city map: every sensor at its lon/lat over an offline vector base (district outlines,
 * water, main roads from the configuration's districts.geojson), drawn on two canvases.
 *
 * - base canvas: districts (or, in the risk view, districts coloured by their open alerts),
 *   water, roads, labels and all sensors — grouped into clusters on a screen grid when more
 *   than CLUSTER_AUTO are in view, so 10,000 sensors cost one pass over typed arrays;
 * - overlay canvas: sensors with open alerts, always drawn one by one on top and coloured by
 *   their worst open alert (red ones pulse), plus the selection and hover rings.
 * The base is redrawn only when the view, the data or the filter changes; the overlay when
 * alerts change, and at ~20 fps while a red alert is visible.
 */

import { LEVEL_RANK, domainName, getLang, levelLabel, t } from "./i18n.js";
import { FONT, LEVEL_COLOURS, NORMAL, SILENT, fitCanvas } from "./palette.js";
import { el, setAttr, setText } from "./dom.js";
import { record } from "./perf.js";

const CLUSTER_AUTO = 400;  // sensors in view above which they are grouped
const CELL_PX = 56;        // cluster grid cell
const PULSE_MS = 1600;
// The overlay is redrawn at most this often (alert changes and the red pulse alike): every
// redraw of a canvas costs a full upload to the compositor, which dominates software rendering.
const OVERLAY_MIN_MS = 100;
const RISK_REDRAW_MS = 500;
const STATUS_CODE = { ok: 0, silent: 1, no_data: 2 };
const SHAPES = { gas: 0, pipeline: 1, bridge: 2, elevator: 3, hazard: 4 };
const RISK_FILL = {
  red: "rgba(229, 57, 53, 0.42)", orange: "rgba(251, 140, 0, 0.36)",
  yellow: "rgba(253, 216, 53, 0.28)", blue: "rgba(30, 136, 229, 0.32)"
};

function ringsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates[0]];
  if (geometry.type === "MultiPolygon") return geometry.coordinates.map((p) => p[0]);
  return [];
}
function linesOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === "LineString") return [geometry.coordinates];
  if (geometry.type === "MultiLineString") return geometry.coordinates;
  return [];
}
function pointInRing(lon, lat, ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [x1, y1] = ring[i], [x2, y2] = ring[j];
    if ((y1 > lat) !== (y2 > lat) && lon < ((x2 - x1) * (lat - y1)) / (y2 - y1) + x1) inside = !inside;
  }
  return inside;
}
function ringCentroid(ring) {
  let a = 0, cx = 0, cy = 0;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const f = ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
    a += f; cx += (ring[j][0] + ring[i][0]) * f; cy += (ring[j][1] + ring[i][1]) * f;
  }
  if (Math.abs(a) < 1e-12) return ring[0];
  return [cx / (3 * a), cy / (3 * a)];
}
function bboxOf(rings) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  for (const ring of rings) for (const [x, y] of ring) {
    if (x < b[0]) b[0] = x; if (y < b[1]) b[1] = y; if (x > b[2]) b[2] = x; if (y > b[3]) b[3] = y;
  }
  return b;
}

function shapePath(ctx, shape, x, y, r) {
  switch (shape) {
    case 1: ctx.rect(x - r * 0.85, y - r * 0.85, r * 1.7, r * 1.7); break;
    case 2: ctx.moveTo(x, y - r * 1.1); ctx.lineTo(x + r, y + r * 0.75); ctx.lineTo(x - r, y + r * 0.75); ctx.closePath(); break;
    case 3: ctx.moveTo(x, y - r * 1.15); ctx.lineTo(x + r * 1.05, y); ctx.lineTo(x, y + r * 1.15); ctx.lineTo(x - r * 1.05, y); ctx.closePath(); break;
    case 4:
      for (let k = 0; k < 6; k++) {
        const a = Math.PI / 6 + (k * Math.PI) / 3;
        if (k === 0) ctx.moveTo(x + r * Math.cos(a), y + r * Math.sin(a)); else ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
      }
      ctx.closePath();
      break;
    default: ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, Math.PI * 2);
  }
}

export class CityMap {
  /** root: the #map element; hooks: {onSelect(sensorId), onDistrict(districtId)} */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks || {};
    this.base = el("canvas", "map-base");
    this.over = el("canvas", "map-overlay");
    this.tip = el("div", "map-tip");
    this.tip.hidden = true;
    root.append(this.base, this.over, this.tip);
    this.over.dataset.testid = "map-canvas";
    this.over.id = "map-canvas";

    this.districts = [];   // {id, name, name_zh, rings, bbox, label: [lon, lat]}
    this.water = [];       // {name, name_zh, rings}
    this.lines = [];       // {kind, cls, name, name_zh, lines}
    this.n = 0;
    this.sensors = [];
    this.index = new Map();
    this.lon = new Float64Array(0); this.lat = new Float64Array(0);
    this.sx = new Float32Array(0); this.sy = new Float32Array(0);
    this.status = new Uint8Array(0); this.shape = new Uint8Array(0); this.shown = new Uint8Array(0);
    this.inView = new Int32Array(0);
    this.shownCount = 0;
    this.levels = new Map();  // sensor id -> worst open level
    this.risk = new Map();    // district id -> {red, orange, yellow, blue, total}
    this.mode = "sensors";
    this.selected = null;
    this.hoverItem = null;
    this.view = null;         // {lon, lat, ppd, kx}
    this.home = null;
    this.hits = [];
    this.overHits = [];
    this.clustered = false;
    this.baseDirty = true; this.overDirty = true; this.overUrgent = false; this.riskPending = false;
    this.lastBase = 0; this.lastOver = 0; this.animating = false;
    this.raf = 0;
    this.wakeTimer = null;
    this.reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    this._wire();
    this.userMoved = false;  // until the operator pans or zooms, the city is refitted on resize
    // The size is taken from the observer, never read from layout while drawing: a read in the
    // animation frame would force a synchronous layout of the whole page after board updates.
    this.width = Math.max(1, root.clientWidth);
    this.height = Math.max(1, root.clientHeight);
    new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      this.width = Math.max(1, Math.round(box.width));
      this.height = Math.max(1, Math.round(box.height));
      if (!this.view || !this.userMoved) this.fit();
      this.baseDirty = this.overDirty = true;
      this.schedule();
    }).observe(root);
  }

  // ------------------------------------------------------------------ data
  setBase(payload) {
    const districts = (payload && payload.districts && payload.districts.features) || [];
    const others = (payload && payload.base && payload.base.features) || [];
    this.districts = districts.map((f) => {
      const p = f.properties || {};
      const rings = ringsOf(f.geometry);
      const largest = rings.slice().sort((a, b) => b.length - a.length)[0] || [[0, 0]];
      return { id: String(p.id || p.name || ""), name: p.name || p.id || "", name_zh: p.name_zh || p.name || p.id || "",
        rings, bbox: bboxOf(rings), label: Array.isArray(p.label) ? p.label : ringCentroid(largest) };
    });
    this.water = others.filter((f) => (f.properties || {}).kind === "water")
      .map((f) => ({ name: f.properties.name, name_zh: f.properties.name_zh, rings: ringsOf(f.geometry) }));
    this.lines = others.filter((f) => ["river", "road"].includes((f.properties || {}).kind))
      .map((f) => ({ kind: f.properties.kind, cls: f.properties.class || "", name: f.properties.name || "",
        name_zh: f.properties.name_zh || f.properties.name || "", lines: linesOf(f.geometry) }));
    this.home = null;
    this.fit();
  }

  districtName(id) {
    const d = this.districts.find((x) => x.id === id);
    if (!d) return id;
    return getLang() === "zh-CN" ? d.name_zh : d.name;
  }
  districtIds() { return this.districts.map((d) => d.id); }

  /** The district polygon containing a point, or null. */
  districtAt(lon, lat) {
    for (const d of this.districts) {
      const b = d.bbox;
      if (lon < b[0] || lon > b[2] || lat < b[1] || lat > b[3]) continue;
      if (d.rings.some((r) => pointInRing(lon, lat, r))) return d.id;
    }
    return null;
  }

  /** sensors: [{id, location: {lon, lat}, domain, status, ...}] from GET /api/sensors. */
  setSensors(sensors) {
    const n = sensors.length;
    this.sensors = sensors;
    this.n = n;
    this.index = new Map();
    this.lon = new Float64Array(n); this.lat = new Float64Array(n);
    this.sx = new Float32Array(n); this.sy = new Float32Array(n);
    this.status = new Uint8Array(n); this.shape = new Uint8Array(n);
    this.shown = new Uint8Array(n).fill(1);
    this.shownCount = n;
    this.inView = new Int32Array(n);
    sensors.forEach((s, i) => {
      this.index.set(s.id, i);
      const loc = s.location || {};
      this.lon[i] = Number(loc.lon); this.lat[i] = Number(loc.lat);
      this.status[i] = STATUS_CODE[s.status] === undefined ? 0 : STATUS_CODE[s.status];
      this.shape[i] = SHAPES[s.domain] === undefined ? 0 : SHAPES[s.domain];
    });
    if (!this.home) this.fit();
    setAttr(this.root, "data-sensors", n);
    setAttr(this.root, "data-ready", "true");
    this.baseDirty = this.overDirty = true;
    this.schedule();
  }

  /** Refresh statuses (silent / no data) without rebuilding. */
  updateStatus(sensors) {
    let changed = false;
    for (const s of sensors) {
      const i = this.index.get(s.id);
      if (i === undefined) continue;
      const code = STATUS_CODE[s.status] === undefined ? 0 : STATUS_CODE[s.status];
      if (this.status[i] !== code) { this.status[i] = code; changed = true; }
      this.sensors[i] = s;
    }
    if (changed) { this.baseDirty = true; this.schedule(); }
  }

  setFilter(predicate) {
    let count = 0;
    for (let i = 0; i < this.n; i++) {
      const keep = !predicate || predicate(this.sensors[i]) ? 1 : 0;
      this.shown[i] = keep;
      count += keep;
    }
    this.shownCount = count;
    this.baseDirty = this.overDirty = true;
    this.schedule();
  }

  /** levels: Map sensor id -> worst open alert level. */
  setLevels(levels) { this.levels = levels; this.overDirty = true; this.schedule(); }

  /** risk: Map district id -> {red, orange, yellow, blue, total} of open alerts. */
  setRisk(risk) {
    this.risk = risk;
    if (this.mode === "risk") { this.riskPending = true; this.schedule(); }
  }

  setMode(mode) {
    this.mode = mode === "risk" ? "risk" : "sensors";
    setAttr(this.root, "data-mode", this.mode);
    this.baseDirty = this.overDirty = true;
    this.schedule();
  }

  select(id) {
    this.selected = id && this.index.has(id) ? id : null;
    setAttr(this.root, "data-selected", this.selected || "");
    this.overDirty = true;
    this.overUrgent = true;
    this.schedule();
  }

  /** Centre on a sensor, zooming in when the city is shown whole. */
  focus(id) {
    const i = this.index.get(id);
    if (i === undefined || !this.view) return;
    const [, w, h] = this._size();
    const x = this._x(this.lon[i], w), y = this._y(this.lat[i], h);
    if (x < 40 || y < 40 || x > w - 40 || y > h - 40) {
      this.userMoved = true;
      this.view.lon = this.lon[i]; this.view.lat = this.lat[i];
      this.baseDirty = this.overDirty = true;
      this.schedule();
    }
  }

  redrawAll() { this.baseDirty = this.overDirty = true; this.schedule(); }

  // ------------------------------------------------------------------ view
  _size() { return [null, this.width, this.height]; }
  _x(lon, w) { const v = this.view; return w / 2 + (lon - v.lon) * v.kx * v.ppd; }
  _y(lat, h) { const v = this.view; return h / 2 - (lat - v.lat) * v.ppd; }
  _lonAt(x, w) { const v = this.view; return v.lon + (x - w / 2) / (v.kx * v.ppd); }
  _latAt(y, h) { const v = this.view; return v.lat - (y - h / 2) / v.ppd; }

  fit() {
    const [, w, h] = this._size();
    let b;
    if (this.districts.length) b = bboxOf(this.districts.flatMap((d) => d.rings));
    else if (this.n) {
      b = [Infinity, Infinity, -Infinity, -Infinity];
      for (let i = 0; i < this.n; i++) {
        const x = this.lon[i], y = this.lat[i];
        if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (x < b[0]) b[0] = x; if (y < b[1]) b[1] = y; if (x > b[2]) b[2] = x; if (y > b[3]) b[3] = y;
      }
      if (!Number.isFinite(b[0])) return;
    } else return;
    const cLat = (b[1] + b[3]) / 2;
    const kx = Math.cos((cLat * Math.PI) / 180);
    const spanX = Math.max((b[2] - b[0]) * kx, 0.002), spanY = Math.max(b[3] - b[1], 0.002);
    const ppd = Math.min(w / spanX, h / spanY) * 0.9;
    this.view = { lon: (b[0] + b[2]) / 2, lat: cLat, ppd, kx };
    this.home = { ...this.view };
    this.baseDirty = this.overDirty = true;
    this.schedule();
  }

  zoomAt(factor, x, y) {
    if (!this.view) return;
    this.userMoved = true;
    const [, w, h] = this._size();
    const lon = this._lonAt(x, w), lat = this._latAt(y, h);
    const minP = this.home ? this.home.ppd * 0.5 : 1, maxP = this.home ? this.home.ppd * 400 : 1e9;
    const ppd = Math.min(maxP, Math.max(minP, this.view.ppd * factor));
    this.view.ppd = ppd;
    this.view.lon = lon - (x - w / 2) / (this.view.kx * ppd);
    this.view.lat = lat + (y - h / 2) / ppd;
    this.baseDirty = this.overDirty = true;
    this.schedule();
  }
  /** Back to the whole city; the view follows resizes again. */
  reset() { this.userMoved = false; this.fit(); }
  zoom(factor) { const [, w, h] = this._size(); this.zoomAt(factor, w / 2, h / 2); }

  /** A sensor's position in CSS px relative to the map element (for tests and tooltips). */
  screenPosition(id) {
    const i = this.index.get(id);
    if (i === undefined || !this.view) return null;
    const [, w, h] = this._size();
    const x = this._x(this.lon[i], w), y = this._y(this.lat[i], h);
    return { x, y, inView: x >= 0 && y >= 0 && x <= w && y <= h };
  }

  // ------------------------------------------------------------------ drawing
  schedule() {
    if (this.raf) return;
    clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    this.raf = requestAnimationFrame((now) => this._frame(now));
  }

  _wake(ms) {
    if (this.raf || this.wakeTimer) return;
    this.wakeTimer = setTimeout(() => { this.wakeTimer = null; this.schedule(); }, ms);
  }

  _frame(now) {
    const started = performance.now();
    try { this._frameNow(now); } finally { record("map", performance.now() - started); }
  }

  _frameNow(now) {
    this.raf = 0;
    if (!this.view) return;
    if (this.riskPending && now - this.lastBase >= RISK_REDRAW_MS) { this.riskPending = false; this.baseDirty = true; }
    if (this.baseDirty) {
      this.baseDirty = false;
      this._drawBase();
      this.lastBase = now;
      this.overDirty = true;
      this.overUrgent = true;  // the overlay must move with the base
    }
    let overlayWaiting = false;
    if (this.overDirty || this.animating) {
      if (now - this.lastOver >= OVERLAY_MIN_MS || this.overUrgent) {
        this.overDirty = false;
        this.overUrgent = false;
        this._drawOverlay(now);
        this.lastOver = now;
      } else {
        overlayWaiting = true;
      }
    }
    // Pending work waits on a timer, not a chain of animation frames: a wall screen with a
    // pulsing red sensor then wakes ten times a second instead of sixty.
    if (this.riskPending || this.animating || overlayWaiting) {
      const waits = [];
      if (this.riskPending) waits.push(RISK_REDRAW_MS - (now - this.lastBase));
      if (this.animating || overlayWaiting) waits.push(OVERLAY_MIN_MS - (now - this.lastOver));
      this._wake(Math.max(0, Math.min(...waits)));
    }
  }

  _pathRing(ctx, ring, w, h) {
    for (let k = 0; k < ring.length; k++) {
      const x = this._x(ring[k][0], w), y = this._y(ring[k][1], h);
      if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.closePath();
  }

  _worstRisk(id) {
    const r = this.risk.get(id);
    if (!r) return null;
    for (const lv of ["red", "orange", "yellow", "blue"]) if (r[lv]) return lv;
    return null;
  }

  _drawBase() {
    const [ctx, w, h] = fitCanvas(this.base, this.width, this.height);
    const zh = getLang() === "zh-CN";
    const risk = this.mode === "risk";
    ctx.fillStyle = "#0a1018";
    ctx.fillRect(0, 0, w, h);
    const ppd = this.view.ppd;

    // districts
    this.districts.forEach((d, k) => {
      ctx.beginPath();
      for (const ring of d.rings) this._pathRing(ctx, ring, w, h);
      const worst = risk ? this._worstRisk(d.id) : null;
      ctx.fillStyle = risk ? (worst ? RISK_FILL[worst] : "rgba(38, 166, 154, 0.10)") : (k % 2 ? "#111c29" : "#13202f");
      ctx.fill();
    });
    // water
    for (const wtr of this.water) {
      ctx.beginPath();
      for (const ring of wtr.rings) this._pathRing(ctx, ring, w, h);
      ctx.fillStyle = "#0d2a40";
      ctx.fill();
      ctx.strokeStyle = "#1c4c6e"; ctx.lineWidth = 1; ctx.stroke();
    }
    // outlines
    ctx.lineJoin = "round";
    for (const d of this.districts) {
      ctx.beginPath();
      for (const ring of d.rings) this._pathRing(ctx, ring, w, h);
      const worst = risk ? this._worstRisk(d.id) : null;
      ctx.strokeStyle = worst ? LEVEL_COLOURS[worst] : "#3d5877";
      ctx.lineWidth = worst ? 2 : 1.3;
      ctx.stroke();
    }
    // rivers and roads
    const zoomWidth = Math.min(2.2, Math.max(0.8, ppd / 6000));
    for (const ln of this.lines) {
      ctx.beginPath();
      for (const line of ln.lines) {
        line.forEach(([lon, lat], k) => { const x = this._x(lon, w), y = this._y(lat, h); if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y); });
      }
      if (ln.kind === "river") { ctx.strokeStyle = "#1f6590"; ctx.lineWidth = 2.6 * zoomWidth; ctx.setLineDash([]); }
      else if (ln.cls === "ring") { ctx.strokeStyle = "#3a4c63"; ctx.lineWidth = 1.4 * zoomWidth; ctx.setLineDash([6, 4]); }
      else { ctx.strokeStyle = "#34465c"; ctx.lineWidth = 1.8 * zoomWidth; ctx.setLineDash([]); }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    // names of roads and rivers once zoomed in
    if (ppd > 9000) {
      ctx.font = "11px " + FONT; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
      for (const ln of this.lines) {
        const line = ln.lines[0];
        if (!line || line.length < 2) continue;
        const mid = line[Math.floor(line.length / 2)];
        const x = this._x(mid[0], w), y = this._y(mid[1], h);
        if (x < 0 || y < 0 || x > w || y > h) continue;
        ctx.fillStyle = ln.kind === "river" ? "#4f90bb" : "#71839a";
        ctx.fillText(zh ? ln.name_zh : ln.name, x, y - 3);
      }
    }

    this._drawSensors(ctx, w, h);

    // district labels last, above the sensors
    ctx.textAlign = "center";
    for (const d of this.districts) {
      const x = this._x(d.label[0], w), y = this._y(d.label[1], h);
      if (x < -50 || y < -20 || x > w + 50 || y > h + 20) continue;
      ctx.font = "600 " + (risk ? 15 : 13) + "px " + FONT;
      ctx.textBaseline = "middle";
      const name = zh ? d.name_zh : d.name;
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(8, 12, 18, 0.85)";
      ctx.strokeText(name, x, y);
      ctx.fillStyle = risk ? "rgba(240, 244, 250, 0.95)" : "rgba(185, 198, 214, 0.62)";
      ctx.fillText(name, x, y);
      if (risk) {
        const r = this.risk.get(d.id);
        const parts = [];
        if (r) for (const lv of ["red", "orange", "yellow", "blue"]) if (r[lv]) parts.push([lv, t("level_short_" + lv) + " " + r[lv]]);
        ctx.font = "600 12px " + FONT;
        if (!parts.length) {
          ctx.fillStyle = "rgba(126, 226, 168, 0.8)";
          ctx.fillText(t("risk_counts_none"), x, y + 17);
        } else {
          const widths = parts.map(([, s]) => ctx.measureText(s).width + 12);
          let cx = x - widths.reduce((a, b) => a + b, 0) / 2;
          parts.forEach(([lv, s], k) => {
            ctx.fillStyle = "rgba(8, 12, 18, 0.8)";
            ctx.fillRect(cx + 1, y + 9, widths[k] - 2, 17);
            ctx.fillStyle = LEVEL_COLOURS[lv];
            ctx.textAlign = "left";
            ctx.fillText(s, cx + 6, y + 18);
            cx += widths[k];
          });
          ctx.textAlign = "center";
        }
      }
    }
    if (!this.districts.length && !this.n) {
      ctx.fillStyle = "#7f91a8"; ctx.font = "14px " + FONT; ctx.textAlign = "center";
      ctx.fillText(t("map_loading"), w / 2, h / 2);
    }
  }

  _drawSensors(ctx, w, h) {
    const v = this.view;
    const cx = w / 2 - v.lon * v.kx * v.ppd, sxk = v.kx * v.ppd;
    const cy = h / 2 + v.lat * v.ppd, syk = v.ppd;
    let m = 0;
    const inView = this.inView;
    for (let i = 0; i < this.n; i++) {
      const x = cx + this.lon[i] * sxk, y = cy - this.lat[i] * syk;
      this.sx[i] = x; this.sy[i] = y;
      if (!this.shown[i] || !(x > -12 && y > -12 && x < w + 12 && y < h + 12)) continue;
      inView[m++] = i;
    }
    const hits = [];
    const risk = this.mode === "risk";
    ctx.globalAlpha = risk ? 0.45 : 1;
    const clustered = m > CLUSTER_AUTO;
    if (clustered && risk) {
      // The risk view is about districts: thousands of grouped sensors would only hide them.
    } else if (clustered) {
      const cells = new Map();
      const count = [], sumX = [], sumY = [], alerts = [], first = [];
      for (let k = 0; k < m; k++) {
        const i = inView[k];
        const key = Math.floor(this.sx[i] / CELL_PX) * 65536 + Math.floor(this.sy[i] / CELL_PX);
        let c = cells.get(key);
        if (c === undefined) { c = count.length; cells.set(key, c); count.push(0); sumX.push(0); sumY.push(0); alerts.push(0); first.push(i); }
        count[c] += 1; sumX[c] += this.sx[i]; sumY[c] += this.sy[i];
        if (this.levels.has(this.sensors[i].id)) alerts[c] += 1;
      }
      const singles = [];
      ctx.font = "700 11px " + FONT; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      for (let c = 0; c < count.length; c++) {
        if (count[c] === 1) { singles.push(first[c]); continue; }
        const x = sumX[c] / count[c], y = sumY[c] / count[c];
        const r = Math.min(19, 7 + 2.2 * Math.log2(count[c]));
        ctx.beginPath(); ctx.arc(x, y, r, 0, Math.PI * 2);
        ctx.fillStyle = "rgba(38, 166, 154, 0.22)"; ctx.fill();
        ctx.lineWidth = 1.2; ctx.strokeStyle = "rgba(77, 208, 190, 0.7)"; ctx.stroke();
        ctx.fillStyle = "#e8f5f3";
        ctx.fillText(count[c] >= 1000 ? (count[c] / 1000).toFixed(1) + "k" : String(count[c]), x, y + 0.5);
        hits.push({ x, y, r: r + 2, cluster: true, count: count[c], alerts: alerts[c] });
      }
      this._drawPoints(ctx, singles, singles.length, hits);
    } else {
      this._drawPoints(ctx, inView, m, hits);
    }
    ctx.globalAlpha = 1;
    this.hits = hits;
    this.clustered = clustered;
    setAttr(this.root, "data-clustered", clustered ? "true" : "false");
    setAttr(this.root, "data-in-view", m);
  }

  _drawPoints(ctx, list, m, hits) {
    const r = Math.min(6, Math.max(4, this.view.ppd / 3000));
    // one path per (status, shape): a handful of fill calls however many sensors
    for (let status = 0; status < 3; status++) {
      for (let shape = 0; shape < 5; shape++) {
        let any = false;
        ctx.beginPath();
        for (let k = 0; k < m; k++) {
          const i = list[k];
          if (this.status[i] !== status || this.shape[i] !== shape) continue;
          shapePath(ctx, shape, this.sx[i], this.sy[i], r);
          any = true;
        }
        if (!any) continue;
        if (status === 0) {
          ctx.fillStyle = NORMAL; ctx.fill();
          ctx.lineWidth = 1; ctx.strokeStyle = "rgba(5, 10, 16, 0.9)"; ctx.stroke();
        } else {
          ctx.fillStyle = "rgba(10, 16, 24, 0.9)"; ctx.fill();
          ctx.lineWidth = 1.5; ctx.strokeStyle = status === 1 ? SILENT : "#3e5060"; ctx.stroke();
        }
      }
    }
    for (let k = 0; k < m; k++) hits.push({ x: this.sx[list[k]], y: this.sy[list[k]], r: r + 4, i: list[k] });
  }

  _drawOverlay(now) {
    const [ctx, w, h] = fitCanvas(this.over, this.width, this.height);
    ctx.clearRect(0, 0, w, h);
    const items = [];
    for (const [id, level] of this.levels) {
      const i = this.index.get(id);
      if (i === undefined || !this.shown[i]) continue;
      const x = this._x(this.lon[i], w), y = this._y(this.lat[i], h);
      if (x < -20 || y < -20 || x > w + 20 || y > h + 20) continue;
      items.push({ i, x, y, level, rank: LEVEL_RANK[level] === undefined ? 9 : LEVEL_RANK[level] });
    }
    items.sort((a, b) => b.rank - a.rank);  // red drawn last, on top
    let red = false;
    const phase = ((now || performance.now()) % PULSE_MS) / PULSE_MS;
    for (const it of items) {
      const colour = LEVEL_COLOURS[it.level] || "#90a4ae";
      const r = it.level === "red" ? 7 : it.level === "orange" ? 6.5 : 6;
      if (it.level === "red") {
        red = true;
        if (!this.reduceMotion) {
          ctx.beginPath(); ctx.arc(it.x, it.y, r + 3 + 14 * phase, 0, Math.PI * 2);
          ctx.strokeStyle = "rgba(229, 57, 53, " + (0.75 * (1 - phase)).toFixed(3) + ")";
          ctx.lineWidth = 2.5; ctx.stroke();
        }
      }
      ctx.beginPath();
      shapePath(ctx, this.shape[it.i], it.x, it.y, r);
      ctx.fillStyle = colour; ctx.fill();
      ctx.lineWidth = 1.6; ctx.strokeStyle = "#05080c"; ctx.stroke();
    }
    this.overHits = items;
    this.animating = red && !this.reduceMotion;
    setAttr(this.root, "data-alerted", items.length);
    for (const [id, style] of [[this.hoverItem && this.hoverItem.i !== undefined ? this.sensors[this.hoverItem.i].id : null, "hover"],
      [this.selected, "selected"]]) {
      if (!id) continue;
      const i = this.index.get(id);
      if (i === undefined) continue;
      const x = this._x(this.lon[i], w), y = this._y(this.lat[i], h);
      ctx.beginPath(); ctx.arc(x, y, style === "selected" ? 12 : 10, 0, Math.PI * 2);
      ctx.lineWidth = style === "selected" ? 2.5 : 1.5;
      ctx.strokeStyle = style === "selected" ? "#ffffff" : "rgba(255,255,255,0.6)";
      ctx.stroke();
      if (style === "selected") {
        ctx.beginPath();
        for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
          ctx.moveTo(x + dx * 15, y + dy * 15); ctx.lineTo(x + dx * 21, y + dy * 21);
        }
        ctx.stroke();
      }
    }
  }

  // ------------------------------------------------------------------ interaction
  _pick(x, y) {
    let best = null, bestD = Infinity;
    for (const it of this.overHits) {  // sensors with alerts first, the most severe one under the pointer
      const d = Math.hypot(it.x - x, it.y - y);
      if (d > 10) continue;
      if (!best || it.rank < best.rank || (it.rank === best.rank && d < bestD)) { best = it; bestD = d; }
    }
    if (best) return { i: best.i };
    bestD = Infinity;
    for (const it of this.hits) {
      const d = Math.hypot(it.x - x, it.y - y);
      if (d <= it.r && d < bestD) { best = it; bestD = d; }
    }
    if (best) return best;
    if (this.districts.length && this.view) {
      const [, w, h] = this._size();
      const id = this.districtAt(this._lonAt(x, w), this._latAt(y, h));
      if (id) return { district: id };
    }
    return null;
  }

  _tipText(item) {
    if (!item) return "";
    if (item.cluster) return item.alerts ? t("tip_cluster_alerts", { n: item.count, k: item.alerts }) : t("tip_cluster", { n: item.count });
    if (item.district) {
      if (this.mode !== "risk") return "";
      const r = this.risk.get(item.district);
      const name = this.districtName(item.district);
      return r && r.total ? t("tip_district", { name, n: r.total }) : t("tip_district_none", { name });
    }
    const s = this.sensors[item.i];
    const level = this.levels.get(s.id);
    return s.id + " · " + (s.asset || "") + "\n" + domainName(s.domain) + " · " + (s.type || "") +
      (level ? "\n" + levelLabel(level) : "");
  }

  _wire() {
    const area = this.over;
    let down = null;
    area.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      down = { x: e.offsetX, y: e.offsetY, lon: this.view && this.view.lon, lat: this.view && this.view.lat, moved: false };
      area.setPointerCapture(e.pointerId);
    });
    area.addEventListener("pointermove", (e) => {
      if (down && this.view) {
        const dx = e.offsetX - down.x, dy = e.offsetY - down.y;
        if (!down.moved && Math.hypot(dx, dy) > 4) down.moved = true;
        if (down.moved) {
          this.userMoved = true;
          this.view.lon = down.lon - dx / (this.view.kx * this.view.ppd);
          this.view.lat = down.lat + dy / this.view.ppd;
          this.tip.hidden = true;
          this.baseDirty = this.overDirty = true;
          this.schedule();
          return;
        }
      }
      this._hover(e.offsetX, e.offsetY);
    });
    area.addEventListener("pointerup", (e) => {
      const d = down;
      down = null;
      if (!d || d.moved) return;
      const item = this._pick(e.offsetX, e.offsetY);
      if (!item) return;
      if (item.cluster) this.zoomAt(3, item.x, item.y);
      else if (item.district) { if (this.mode === "risk" && this.hooks.onDistrict) this.hooks.onDistrict(item.district); }
      else if (this.hooks.onSelect) this.hooks.onSelect(this.sensors[item.i].id);
    });
    area.addEventListener("pointerleave", () => { this.tip.hidden = true; if (this.hoverItem) { this.hoverItem = null; this.overDirty = true; this.schedule(); } });
    area.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.zoomAt(Math.pow(1.0018, -e.deltaY), e.offsetX, e.offsetY);
    }, { passive: false });
    area.addEventListener("dblclick", (e) => { e.preventDefault(); this.zoomAt(2, e.offsetX, e.offsetY); });
  }

  _hover(x, y) {
    const item = this._pick(x, y);
    const text = this._tipText(item);
    const prev = this.hoverItem;
    this.hoverItem = item && item.i !== undefined ? item : null;
    if ((prev && prev.i) !== (this.hoverItem && this.hoverItem.i)) { this.overDirty = true; this.schedule(); }
    this.over.style.cursor = item && !item.district ? "pointer" : (item && this.mode === "risk" ? "pointer" : "grab");
    if (!text) { this.tip.hidden = true; return; }
    setText(this.tip, text);
    this.tip.hidden = false;
    const w = this.width;
    const left = x + 16 + this.tip.offsetWidth > w ? x - 16 - this.tip.offsetWidth : x + 16;
    this.tip.style.transform = "translate(" + Math.round(left) + "px," + Math.round(y + 14) + "px)";
  }
}
