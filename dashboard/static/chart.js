/* A time-series chart of one metric on a canvas, with the threshold levels of its rules drawn
 * as coloured bands: for an `above` rule each level's band runs from its limit up to the next
 * level's limit (red up to the top), for `below` rules downwards. Bucketed series (min/max per
 * bucket) are drawn as an envelope with the bucket's last reading as the line.
 */

import { fmtNum, levelName, pad2, t } from "./i18n.js";
import { ACCENT, FONT, GRID, LEVEL_COLOURS, LEVEL_FILLS, MUTED, TEXT, fitCanvas } from "./palette.js";

const M = { left: 54, right: 70, top: 10, bottom: 22 };
const TIME_STEPS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];

function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/** The level a value is in for the given threshold rules (highest wins), or null. */
export function levelOf(value, rules) {
  let best = null, bestN = 0;
  const order = { blue: 1, yellow: 2, orange: 3, red: 4 };
  for (const r of rules || []) {
    if (!r.levels) continue;
    for (const [level, limit] of Object.entries(r.levels)) {
      const hit = r.direction === "below" ? value <= limit : value >= limit;
      if (hit && order[level] > bestN) { best = level; bestN = order[level]; }
    }
  }
  return best;
}

export class MetricChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.rules = [];
    this.series = null;
    this.since = 0;
    this.until = 0;
    this.gapMs = Infinity;
    this.hoverX = null;
    canvas.addEventListener("mousemove", (e) => { this.hoverX = e.offsetX; this.draw(); });
    canvas.addEventListener("mouseleave", () => { this.hoverX = null; this.draw(); });
  }

  setRules(rules) { this.rules = (rules || []).filter((r) => r.levels && Object.keys(r.levels).length); }

  /** series: {ts: [...], value: [...], min: [...]|null, max: [...]|null, bucket_ms}; gapMs breaks the line. */
  setSeries(series, since, until, gapMs) {
    this.series = series;
    this.since = since;
    this.until = until;
    this.gapMs = gapMs || Infinity;
    this.draw();
  }

  yRange() {
    let lo = Infinity, hi = -Infinity;
    const s = this.series;
    if (s && s.ts.length) {
      const lows = s.min || s.value, highs = s.max || s.value;
      for (let i = 0; i < s.ts.length; i++) {
        if (lows[i] < lo) lo = lows[i];
        if (highs[i] > hi) hi = highs[i];
      }
    }
    const limits = [];
    for (const r of this.rules) {
      const values = Object.values(r.levels);
      // The first level to be reached is always in view, so the distance to it is visible.
      limits.push(r.direction === "below" ? Math.max(...values) : Math.min(...values));
      if (!Number.isFinite(lo)) limits.push(...values);
    }
    for (const v of limits) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { const d = Math.abs(hi) * 0.1 || 1; lo -= d; hi += d; }
    const pad = (hi - lo) * 0.08;
    return [lo - pad, hi + pad];
  }

  draw() {
    const [ctx, w, h] = fitCanvas(this.canvas);
    ctx.clearRect(0, 0, w, h);
    const pw = w - M.left - M.right, ph = h - M.top - M.bottom;
    if (pw < 20 || ph < 20) return;
    const [lo, hi] = this.yRange();
    const since = this.since, until = Math.max(this.until, this.since + 1);
    const X = (ts) => M.left + ((ts - since) / (until - since)) * pw;
    const Y = (v) => M.top + (1 - (v - lo) / (hi - lo)) * ph;
    const clampY = (y) => Math.max(M.top, Math.min(M.top + ph, y));
    ctx.font = "11px " + FONT;

    // threshold bands and limit lines
    for (const r of this.rules) {
      const entries = Object.entries(r.levels).sort((a, b) => r.direction === "below" ? b[1] - a[1] : a[1] - b[1]);
      entries.forEach(([level, limit], i) => {
        const next = i + 1 < entries.length ? entries[i + 1][1] : (r.direction === "below" ? -Infinity : Infinity);
        const y1 = clampY(Y(limit)), y2 = clampY(Number.isFinite(next) ? Y(next) : (r.direction === "below" ? M.top + ph : M.top));
        ctx.fillStyle = LEVEL_FILLS[level] || "rgba(255,255,255,0.05)";
        ctx.fillRect(M.left, Math.min(y1, y2), pw, Math.abs(y2 - y1));
      });
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1;
      for (const [level, limit] of entries) {
        const y = Y(limit);
        if (y < M.top - 0.5 || y > M.top + ph + 0.5) continue;
        ctx.strokeStyle = LEVEL_COLOURS[level];
        ctx.beginPath(); ctx.moveTo(M.left, Math.round(y) + 0.5); ctx.lineTo(M.left + pw, Math.round(y) + 0.5); ctx.stroke();
        ctx.fillStyle = LEVEL_COLOURS[level];
        ctx.textAlign = "left"; ctx.textBaseline = "middle";
        ctx.fillText(levelName(level) + " " + fmtNum(limit), M.left + pw + 6, y);
      }
      ctx.setLineDash([]);
    }

    // grid and axes
    const step = niceStep(hi - lo, 4);
    ctx.strokeStyle = GRID; ctx.fillStyle = MUTED; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(M.left, y); ctx.lineTo(M.left + pw, y); ctx.stroke();
      ctx.fillText(fmtNum(Math.abs(v) < step / 1e6 ? 0 : v), M.left - 6, y);
    }
    const spanMin = (until - since) / 60000;
    const stepMin = TIME_STEPS_MIN.find((s) => spanMin / s <= 6) || 1440;
    const stepMs = stepMin * 60000;
    const tzOffset = new Date(since).getTimezoneOffset() * 60000;
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (let ts = Math.ceil((since - tzOffset) / stepMs) * stepMs + tzOffset; ts <= until; ts += stepMs) {
      const x = Math.round(X(ts)) + 0.5;
      ctx.strokeStyle = GRID;
      ctx.beginPath(); ctx.moveTo(x, M.top); ctx.lineTo(x, M.top + ph); ctx.stroke();
      const d = new Date(ts);
      ctx.fillText(pad2(d.getHours()) + ":" + pad2(d.getMinutes()), x, M.top + ph + 5);
    }
    ctx.strokeStyle = "rgba(127,145,168,0.45)";
    ctx.strokeRect(M.left + 0.5, M.top + 0.5, pw - 1, ph - 1);

    const s = this.series;
    if (!s || !s.ts.length) {
      ctx.fillStyle = MUTED; ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.font = "13px " + FONT;
      ctx.fillText(t("chart_no_data"), M.left + pw / 2, M.top + ph / 2);
      return;
    }
    ctx.save();
    ctx.beginPath(); ctx.rect(M.left, M.top, pw, ph); ctx.clip();
    const n = s.ts.length;
    const gap = this.gapMs;
    // runs of points without gaps
    const runs = [];
    let start = 0;
    for (let i = 1; i <= n; i++) {
      if (i === n || s.ts[i] - s.ts[i - 1] > gap) { runs.push([start, i]); start = i; }
    }
    if (s.min && s.max) {
      ctx.fillStyle = "rgba(79, 195, 247, 0.22)";
      for (const [a, b] of runs) {
        ctx.beginPath();
        for (let i = a; i < b; i++) { const x = X(s.ts[i]); if (i === a) ctx.moveTo(x, Y(s.max[i])); else ctx.lineTo(x, Y(s.max[i])); }
        for (let i = b - 1; i >= a; i--) ctx.lineTo(X(s.ts[i]), Y(s.min[i]));
        ctx.closePath(); ctx.fill();
      }
    }
    ctx.strokeStyle = ACCENT; ctx.lineWidth = 1.6; ctx.lineJoin = "round";
    for (const [a, b] of runs) {
      ctx.beginPath();
      for (let i = a; i < b; i++) { const x = X(s.ts[i]), y = Y(s.value[i]); if (i === a) ctx.moveTo(x, y); else ctx.lineTo(x, y); }
      if (b - a === 1) { ctx.arc(X(s.ts[a]), Y(s.value[a]), 1.5, 0, Math.PI * 2); }
      ctx.stroke();
    }
    if (n <= 80) {
      ctx.fillStyle = ACCENT;
      for (let i = 0; i < n; i++) { ctx.beginPath(); ctx.arc(X(s.ts[i]), Y(s.value[i]), 2, 0, Math.PI * 2); ctx.fill(); }
    }
    ctx.restore();
    // newest reading, coloured by the level it is in
    const lastV = s.value[n - 1];
    const lvl = levelOf(lastV, this.rules);
    ctx.fillStyle = lvl ? LEVEL_COLOURS[lvl] : ACCENT;
    ctx.strokeStyle = "#0a0f16"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(X(s.ts[n - 1]), Y(lastV), 4.5, 0, Math.PI * 2); ctx.fill(); ctx.stroke();

    if (this.hoverX !== null && this.hoverX >= M.left && this.hoverX <= M.left + pw) {
      const target = since + ((this.hoverX - M.left) / pw) * (until - since);
      let lo2 = 0, hi2 = n - 1;
      while (lo2 < hi2) { const mid = (lo2 + hi2) >> 1; if (s.ts[mid] < target) lo2 = mid + 1; else hi2 = mid; }
      const i = lo2 > 0 && Math.abs(s.ts[lo2 - 1] - target) < Math.abs(s.ts[lo2] - target) ? lo2 - 1 : lo2;
      const x = X(s.ts[i]), y = Y(s.value[i]);
      ctx.strokeStyle = "rgba(232,238,246,0.5)"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(Math.round(x) + 0.5, M.top); ctx.lineTo(Math.round(x) + 0.5, M.top + ph); ctx.stroke();
      const d = new Date(s.ts[i]);
      let label = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds()) + "  " + fmtNum(s.value[i]);
      if (s.min && s.max) label += "  [" + fmtNum(s.min[i]) + " … " + fmtNum(s.max[i]) + "]";
      ctx.font = "12px " + FONT;
      const tw = ctx.measureText(label).width + 12;
      const bx = Math.min(Math.max(M.left, x - tw / 2), M.left + pw - tw);
      ctx.fillStyle = "rgba(10, 15, 22, 0.92)"; ctx.fillRect(bx, M.top + 2, tw, 20);
      ctx.fillStyle = TEXT; ctx.textAlign = "left"; ctx.textBaseline = "middle";
      ctx.fillText(label, bx + 6, M.top + 12);
      ctx.fillStyle = ACCENT; ctx.beginPath(); ctx.arc(x, y, 3.5, 0, Math.PI * 2); ctx.fill();
    }
  }
}
