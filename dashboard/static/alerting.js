/* The alert-management page (/static/alerting.html): alarm load, silences, receivers and
 * notifications, refreshed every 10 s. Uses the session token of the alert board (api.js). */

import { api, takeTokenFromUrl } from "./api.js";
import { el, setText } from "./dom.js";

const REFRESH_MS = 10_000;
const $ = (id) => document.getElementById(id);

function time(ms) {
  return ms ? new Date(ms).toLocaleString() : "—";
}

function seconds(s) {
  if (s === undefined) return "—";
  return s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}

function table(node, head, rows) {
  const tr = el("tr");
  for (const h of head) tr.append(el("th", null, h));
  const body = rows.map((cells) => {
    const row = el("tr");
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell === undefined || cell === null ? "" : String(cell);
      row.append(td);
    }
    return row;
  });
  node.replaceChildren(tr, ...body);
}

function status(text) {
  return el("span", "status-" + text, text);
}

function matchersText(m) {
  return Object.entries(m).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

function showError(text) { setText($("error"), text || ""); }

async function loadAlarmLoad() {
  const r = await api("GET", "/api/alarm-load");
  if (!r.ok) return r.error;
  const d = r.data, rate = d.rate;
  const figures = [
    ["近10分钟 last 10 min", rate.last_10min, rate.per_operator_last_10min > rate.target_per_operator_per_10min],
    ["每人 per operator", rate.per_operator_last_10min, rate.per_operator_last_10min > rate.target_per_operator_per_10min],
    ["洪峰时段 floods", rate.flood_periods, rate.flood_periods > 0],
    ["长期未关 standing", d.standing.count, d.standing.count > 0],
    ["颤振 chattering", d.chattering.count, d.chattering.count > 0],
    ["波动 flapping", d.flapping.count, d.flapping.count > 0],
  ];
  $("figures").replaceChildren(...figures.map(([label, value, bad]) => {
    const f = el("div", "figure" + (bad ? " bad" : ""));
    f.append(el("b", null, String(value)), el("span", "muted", label));
    return f;
  }));
  const peak = Math.max(1, ...d.per_10min.map((b) => b.count));
  $("bars").replaceChildren(...d.per_10min.map((b) => {
    const bar = el("div", b.count / d.operators_on_duty > 10 ? "flood" : "");
    bar.style.height = `${(100 * b.count) / peak}%`;
    bar.title = `${time(b.start)}: ${b.count}`;
    return bar;
  }));
  table($("ack"), ["level", "n", "mean", "median", "p90"],
        Object.entries(d.time_to_acknowledge).map(([level, s]) => [level, s.count, seconds(s.mean_s),
                                                                     seconds(s.median_s), seconds(s.p90_s)]));
  const rows = [];
  for (let i = 0; i < Math.max(d.top_rules.length, d.top_sensors.length); i++) {
    const r1 = d.top_rules[i] || {}, s1 = d.top_sensors[i] || {};
    rows.push([r1.rule, r1.count, s1.sensor, s1.count]);
  }
  table($("noisy"), ["rule", "n", "sensor", "n"], rows);
  return null;
}

async function expire(id) {
  const by = $("by").value.trim() || window.prompt("Expired by / 操作人");
  if (!by) return;
  const r = await api("DELETE", `/api/silences/${encodeURIComponent(id)}?by=${encodeURIComponent(by)}`);
  showError(r.ok ? "" : r.error);
  refresh();
}

async function loadSilences() {
  const r = await api("GET", "/api/silences?limit=50");
  if (!r.ok) return r.error;
  table($("silences"), ["id", "matchers", "until", "reason", "by", "status", ""], r.data.map((s) => {
    let action = "";
    if (s.status !== "expired") {
      action = el("button", null, "结束 Expire");
      action.type = "button";
      action.addEventListener("click", () => expire(s.id));
    }
    return [s.id, matchersText(s.matchers), time(s.ends_at), s.reason, s.created_by, status(s.status), action];
  }));
  return null;
}

async function loadNotifications() {
  const [receivers, sent] = await Promise.all([api("GET", "/api/receivers"), api("GET", "/api/notifications?limit=50")]);
  if (!receivers.ok) return receivers.error;
  table($("receivers"), ["receiver", "kind", "queued", "sent", "pending", "failed"],
        receivers.data.map((r) => [r.name, r.kind, r.queued, r.sent, r.pending, r.failed]));
  if (!sent.ok) return sent.error;
  table($("notifications"), ["time", "receiver", "kind", "alerts", "status", "tries", "last error"],
        sent.data.map((n) => [time(n.created_at), n.receiver, n.kind, n.alerts.join(", "), status(n.status), n.attempts,
                              n.last_error || ""]));
  return null;
}

async function refresh() {
  const errors = (await Promise.all([loadAlarmLoad(), loadSilences(), loadNotifications()])).filter(Boolean);
  showError(errors[0] || "");
  setText($("updated"), new Date().toLocaleTimeString());
}

$("new-silence").addEventListener("submit", async (event) => {
  event.preventDefault();
  const matchers = {};
  for (const line of $("matchers").value.split(/[\n,]+/)) {
    const [name, ...rest] = line.split("=");
    if (name.trim() && rest.length) matchers[name.trim()] = rest.join("=").trim();
  }
  const r = await api("POST", "/api/silences", {
    matchers, duration_s: Number($("hours").value) * 3600, reason: $("reason").value, created_by: $("by").value,
  });
  showError(r.ok ? "" : r.error);
  if (r.ok) { $("matchers").value = ""; $("reason").value = ""; }
  refresh();
});

takeTokenFromUrl();
refresh();
setInterval(refresh, REFRESH_MS);
