/* Every string of the control-room page, in Chinese (default) and English, and the
 * formatting of numbers, times, ages and levels. Keys missing in one language fall back to English.
 */

export const I18N = {
  en: {
    product: "Lifeline 城市生命线监测预警",
    lang_button: "中文",
    lang_button_title: "切换到中文",
    level_red: "Red", level_orange: "Orange", level_yellow: "Yellow", level_blue: "Blue",
    level_lower_red: "red", level_lower_orange: "orange", level_lower_yellow: "yellow", level_lower_blue: "blue",
    level_roman_red: "I", level_roman_orange: "II", level_roman_yellow: "III", level_roman_blue: "IV",
    level_short_red: "R", level_short_orange: "O", level_short_yellow: "Y", level_short_blue: "B",
    level_with_roman: "{name} {roman}",
    peak: "peak {level}",
    total_open: "Open",
    open_by_level: "Open alerts by level",
    filter_domain: "Domain", filter_level: "Level", filter_district: "District", filter_owner: "Owner",
    filter_state: "State",
    all_domains: "All domains", all_levels: "All levels", all_districts: "All districts", all_owners: "All owners",
    all_states: "All states",
    state_new: "Unacknowledged", state_acknowledged: "Acknowledged", state_dispatched: "Dispatched",
    state_active: "Condition active", state_cleared: "Condition cleared",
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
    view_board: "Board", view_split: "Split", view_map: "Map", view_title: "Screen layout",
    conn_connected: "Live", conn_connecting: "Connecting…", conn_disconnected: "Disconnected",
    banner_lost: "Connection lost — reconnecting",
    banner_connecting: "Connecting to the alert service…",
    banner_detail: "Board may be out of date (last live update {ago} ago). Attempt {n}.",
    banner_detail_never: "No live data yet. Attempt {n}.",
    col_level: "Level", col_age: "Age", col_object: "Asset · sensor",
    col_value: "Value", col_state: "State", col_actions: "Actions",
    cond_active: "Active", cond_cleared: "Cleared",
    wf_new: "New", wf_acknowledged: "Acknowledged", wf_dispatched: "Dispatched", wf_closed: "Closed",
    threshold_short: "thr",
    forecast: "{level} in {eta}",
    forecast_now: "{level} imminent",
    forecast_title: "Trend {slope}/min: {level} expected in {eta}",
    eta_s: "{n} s", eta_m: "{n} min", eta_h: "{h} h {m} min",
    btn_ack: "Ack", btn_dispatch: "Dispatch", btn_close: "Close",
    btn_submit_dispatch: "Dispatch", btn_submit_close: "Close alert", btn_cancel: "Cancel",
    ack_title: "Acknowledge: I have seen this alert",
    dispatch_title: "Hand this alert to a response team",
    close_title: "Close this alert (only once its condition has cleared)",
    close_title_active: "Cannot close while the condition is still active",
    row_title: "Click to open sensor {sensor}",
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
    ago: "{age} ago",
    raised_at: "Raised {time}",
    updated_at: "Updated {time}",
    peak_title: "Highest level reached: {level}",
    hazard_grade: "hazard source grade {level} (R {r})",
    overdue: "overdue", overdue_title: "Missed its {step} deadline; escalated to tier {tier}",
    step_acknowledge: "acknowledge", step_dispatch: "dispatch",
    flapping: "flapping", flapping_title: "Its condition changes too often: notifies once until it settles",
    new_red: "NEW RED ALERT {id}: {asset} {message}",
    new_red_many: "{n} NEW RED ALERTS — latest {id}: {asset}",

    map_title: "City map",
    map_mode_sensors: "Sensors", map_mode_risk: "Risk",
    map_mode_title: "Sensors coloured by their worst open alert, or districts coloured by their open alerts",
    map_zoom_in: "Zoom in", map_zoom_out: "Zoom out", map_fit: "Fit", map_fit_title: "Show the whole city",
    map_count: "{n} sensors", map_count_filtered: "{shown} of {n} sensors",
    map_alerted: "{n} with open alerts",
    map_no_base: "No base map for this city (districts.geojson beside the configuration)",
    map_loading: "Loading sensors…",
    legend_title: "Worst open alert", legend_normal: "Normal", legend_silent: "Silent / no data",
    legend_cluster: "Group of sensors (click to zoom)",
    legend_risk_title: "District risk (open alerts)", legend_risk_none: "No open alerts",
    tip_cluster: "{n} sensors — click to zoom in",
    tip_cluster_alerts: "{n} sensors, {k} with open alerts — click to zoom in",
    tip_district: "{name}: {n} open alerts",
    tip_district_none: "{name}: no open alerts",
    risk_counts_none: "no alerts",

    detail_close: "Close", detail_close_title: "Close the sensor detail (Esc)",
    detail_asset: "Asset", detail_type: "Type", detail_domain: "Domain", detail_district: "District",
    detail_owner: "Owner", detail_gateway: "Gateway", detail_interval: "Reporting interval",
    detail_location: "Location", detail_interval_value: "{n} s",
    detail_quality: "Data quality", detail_last_seen: "Last reading", detail_status: "Sensor status",
    detail_gateway_state: "Gateway", detail_rejections: "Gateway rejections",
    detail_sensor_rejections: "This sensor's recent rejections",
    detail_no_rejections: "none", detail_never: "never",
    status_ok: "Reporting", status_silent: "Silent", status_no_data: "No data yet",
    detail_metrics: "Metrics", detail_window: "Window",
    window_15m: "15 min", window_1h: "1 hour", window_6h: "6 hours", window_24h: "24 hours",
    detail_alerts: "Alerts and transitions", detail_no_alerts: "No alerts for this sensor",
    detail_siblings: "Other sensors on {asset}", detail_no_siblings: "No other sensors on this asset",
    detail_loading: "Loading…", detail_not_found: "This sensor is not in the catalogue.",
    chart_no_data: "No readings in this window", chart_last: "last {value}",
    chart_rule: "rule {id}: {direction} limits", chart_above: "upper", chart_below: "lower",
    chart_points: "{n} readings", chart_buckets: "{n} readings, min/max per {bucket}",
    ev_raised: "Raised", ev_escalated: "Escalated", ev_deescalated: "De-escalated", ev_cleared: "Cleared",
    ev_reactivated: "Reactivated", ev_acknowledged: "Acknowledged", ev_dispatched: "Dispatched", ev_closed: "Closed",
    history_by: "by {by}", history_to: "to {to}",
    alert_open: "open", alert_closed: "closed",

    sb_ws: "Live link", sb_readings: "Readings", sb_rate: "{n}/s", sb_alerts: "Open",
    sb_gateways: "Gateways", sb_online: "{n} online", sb_offline: "{n} offline", sb_no_data: "{n} no data",
    sb_rejected: "Rejected", sb_mqtt: "MQTT", sb_mqtt_ok: "subscribed", sb_mqtt_down: "not subscribed",
    sb_unknown: "—", sb_stale: "status not updated for {age}",
    gw_title: "Gateways", gw_col_gateway: "Gateway", gw_col_owner: "Owner", gw_col_state: "State",
    gw_col_last: "Last reading", gw_col_sensors: "Sensors reporting", gw_col_rejected: "Rejections",
    gw_online: "Online", gw_offline: "Offline", gw_no_data: "No data", gw_unknown: "Not in catalogue",
    gw_close: "Close",
    reason_invalid_json: "invalid JSON", reason_invalid_shape: "invalid shape", reason_unknown_sensor: "unknown sensor",
    reason_not_owner: "not owner", reason_unknown_metric: "unknown metric", reason_invalid_value: "invalid value",
    reason_future_timestamp: "future timestamp", reason_stale_timestamp: "stale timestamp", reason_too_large: "too large"
  },
  "zh-CN": {
    product: "Lifeline 城市生命线监测预警",
    lang_button: "EN",
    lang_button_title: "Switch to English",
    level_red: "红色", level_orange: "橙色", level_yellow: "黄色", level_blue: "蓝色",
    level_lower_red: "红色", level_lower_orange: "橙色", level_lower_yellow: "黄色", level_lower_blue: "蓝色",
    level_roman_red: "I级", level_roman_orange: "II级", level_roman_yellow: "III级", level_roman_blue: "IV级",
    level_short_red: "红", level_short_orange: "橙", level_short_yellow: "黄", level_short_blue: "蓝",
    level_with_roman: "{name} {roman}",
    peak: "峰值 {level}",
    total_open: "未关闭",
    open_by_level: "按等级统计的未关闭告警",
    filter_domain: "领域", filter_level: "等级", filter_district: "区域", filter_owner: "责任单位",
    filter_state: "状态",
    all_domains: "全部领域", all_levels: "全部等级", all_districts: "全部区域", all_owners: "全部单位",
    all_states: "全部状态",
    state_new: "待确认", state_acknowledged: "已确认", state_dispatched: "已派单",
    state_active: "告警持续中", state_cleared: "告警已恢复",
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
    view_board: "看板", view_split: "分屏", view_map: "地图", view_title: "屏幕布局",
    conn_connected: "实时", conn_connecting: "连接中…", conn_disconnected: "已断开",
    banner_lost: "连接中断 — 正在重连",
    banner_connecting: "正在连接告警服务…",
    banner_detail: "看板数据可能已过时（距上次实时更新 {ago}）。第 {n} 次尝试。",
    banner_detail_never: "尚无实时数据。第 {n} 次尝试。",
    col_level: "等级", col_age: "持续 / 预测", col_object: "对象 · 传感器 / 告警信息",
    col_value: "数值 / 阈值", col_state: "状态 / 处置", col_actions: "操作",
    cond_active: "持续中", cond_cleared: "已恢复",
    wf_new: "待确认", wf_acknowledged: "已确认", wf_dispatched: "已派单", wf_closed: "已关闭",
    threshold_short: "阈值",
    forecast: "{level} {eta}后",
    forecast_now: "即将{level}",
    forecast_title: "趋势 {slope}/分钟：预计 {eta}后达到{level}",
    eta_s: "{n} 秒", eta_m: "{n} 分钟", eta_h: "{h} 小时 {m} 分钟",
    btn_ack: "确认", btn_dispatch: "派单", btn_close: "关闭",
    btn_submit_dispatch: "派单", btn_submit_close: "关闭告警", btn_cancel: "取消",
    ack_title: "确认：已知悉该告警",
    dispatch_title: "将告警派给处置单位",
    close_title: "关闭告警（需告警状态已恢复）",
    close_title_active: "告警状态仍在持续，不能关闭",
    row_title: "点击查看传感器 {sensor}",
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
    ago: "{age}前",
    raised_at: "发生于 {time}",
    updated_at: "更新于 {time}",
    peak_title: "曾达到的最高等级：{level}",
    hazard_grade: "{level}级重大危险源 (R {r})",
    overdue: "超时", overdue_title: "未在时限内{step}，已升级至第 {tier} 级",
    step_acknowledge: "确认", step_dispatch: "派遣",
    flapping: "频繁波动", flapping_title: "状态变化过于频繁：稳定前只通知一次",
    new_red: "新红色告警 {id}：{asset} {message}",
    new_red_many: "{n} 条新红色告警 — 最新 {id}：{asset}",

    map_title: "城市态势图",
    map_mode_sensors: "传感器", map_mode_risk: "风险",
    map_mode_title: "按最高未关闭告警着色的传感器，或按未关闭告警着色的区域",
    map_zoom_in: "放大", map_zoom_out: "缩小", map_fit: "全图", map_fit_title: "显示整个城市",
    map_count: "{n} 个传感器", map_count_filtered: "{shown} / {n} 个传感器",
    map_alerted: "{n} 个有未关闭告警",
    map_no_base: "本城市无底图（配置文件旁的 districts.geojson）",
    map_loading: "正在加载传感器…",
    legend_title: "最高未关闭告警", legend_normal: "正常", legend_silent: "离线 / 无数据",
    legend_cluster: "传感器聚合（点击放大）",
    legend_risk_title: "区域风险（未关闭告警）", legend_risk_none: "无未关闭告警",
    tip_cluster: "{n} 个传感器 — 点击放大",
    tip_cluster_alerts: "{n} 个传感器，其中 {k} 个有未关闭告警 — 点击放大",
    tip_district: "{name}：{n} 条未关闭告警",
    tip_district_none: "{name}：无未关闭告警",
    risk_counts_none: "无告警",

    detail_close: "关闭", detail_close_title: "关闭传感器详情（Esc）",
    detail_asset: "监测对象", detail_type: "类型", detail_domain: "领域", detail_district: "区域",
    detail_owner: "责任单位", detail_gateway: "网关", detail_interval: "上报周期",
    detail_location: "位置", detail_interval_value: "{n} 秒",
    detail_quality: "数据质量", detail_last_seen: "最近读数", detail_status: "传感器状态",
    detail_gateway_state: "网关", detail_rejections: "网关拒收",
    detail_sensor_rejections: "本传感器近期拒收",
    detail_no_rejections: "无", detail_never: "从未上报",
    status_ok: "正常上报", status_silent: "离线", status_no_data: "尚无数据",
    detail_metrics: "监测指标", detail_window: "时间窗",
    window_15m: "15 分钟", window_1h: "1 小时", window_6h: "6 小时", window_24h: "24 小时",
    detail_alerts: "告警与处置记录", detail_no_alerts: "该传感器无告警记录",
    detail_siblings: "{asset} 上的其他传感器", detail_no_siblings: "该对象无其他传感器",
    detail_loading: "加载中…", detail_not_found: "目录中没有该传感器。",
    chart_no_data: "该时间窗内无读数", chart_last: "最新 {value}",
    chart_rule: "规则 {id}：{direction}限", chart_above: "上", chart_below: "下",
    chart_points: "{n} 个读数", chart_buckets: "{n} 个读数，每 {bucket} 取最小/最大",
    ev_raised: "产生", ev_escalated: "升级", ev_deescalated: "降级", ev_cleared: "恢复",
    ev_reactivated: "重新触发", ev_acknowledged: "确认", ev_dispatched: "派单", ev_closed: "关闭",
    history_by: "操作人 {by}", history_to: "派给 {to}",
    alert_open: "未关闭", alert_closed: "已关闭",

    sb_ws: "实时链路", sb_readings: "读数", sb_rate: "{n} 条/秒", sb_alerts: "未关闭",
    sb_gateways: "网关", sb_online: "在线 {n}", sb_offline: "离线 {n}", sb_no_data: "无数据 {n}",
    sb_rejected: "拒收", sb_mqtt: "MQTT", sb_mqtt_ok: "已订阅", sb_mqtt_down: "未订阅",
    sb_unknown: "—", sb_stale: "状态 {age} 未更新",
    gw_title: "网关状态", gw_col_gateway: "网关", gw_col_owner: "责任单位", gw_col_state: "状态",
    gw_col_last: "最近读数", gw_col_sensors: "在报传感器", gw_col_rejected: "拒收",
    gw_online: "在线", gw_offline: "离线", gw_no_data: "无数据", gw_unknown: "未登记",
    gw_close: "关闭",
    reason_invalid_json: "非 JSON", reason_invalid_shape: "格式错误", reason_unknown_sensor: "未知传感器",
    reason_not_owner: "非所属网关", reason_unknown_metric: "未知指标", reason_invalid_value: "无效数值",
    reason_future_timestamp: "时间超前", reason_stale_timestamp: "时间过旧", reason_too_large: "消息过大"
  }
};

export const LEVELS = ["red", "orange", "yellow", "blue"];
export const LEVEL_RANK = { red: 0, orange: 1, yellow: 2, blue: 3 };
export const DOMAINS = ["gas", "pipeline", "bridge", "elevator", "hazard"];

const LANG_KEY = "lifeline.lang";
let lang = "zh-CN";
try { lang = localStorage.getItem(LANG_KEY) || "zh-CN"; } catch (e) { /* private mode */ }
if (!I18N[lang]) lang = "zh-CN";

export function getLang() { return lang; }
export function setLang(next) {
  lang = I18N[next] ? next : "zh-CN";
  try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* private mode */ }
}

export function t(key, vars) {
  let s = (I18N[lang] && I18N[lang][key]);
  if (s === undefined) s = I18N.en[key];
  if (s === undefined) s = key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
  return s;
}

/** The translation of prefix+value, or the value itself when there is none. */
export function labelOr(prefix, value) {
  const k = prefix + value;
  const s = t(k);
  return s === k ? String(value === undefined || value === null ? "" : value) : s;
}

export function levelName(level) { return LEVEL_RANK[level] === undefined ? String(level || "?") : t("level_" + level); }
export function levelRoman(level) { return LEVEL_RANK[level] === undefined ? "" : t("level_roman_" + level); }
export function levelLabel(level) { return t("level_with_roman", { name: levelName(level), roman: levelRoman(level) }).trim(); }
export function domainName(d) { return labelOr("domain_", d); }

export function pad2(n) { return n < 10 ? "0" + n : String(n); }

export function fmtNum(v) {
  if (v === null || v === undefined || v === "") return "—";
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  const digits = a >= 100 ? 1 : a >= 1 ? 2 : 4;
  return String(Number(n.toFixed(digits)));
}

export function fmtTime(ms) {
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
    pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
}

export function fmtClock(ms) {
  const d = new Date(ms);
  return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
}

export function fmtAge(ms) {
  let s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return t("age_s", { s });
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return t("age_m", { m, s: pad2(s) });
  let h = Math.floor(m / 60); m %= 60;
  if (h < 24) return t("age_h", { h, m: pad2(m) });
  const d = Math.floor(h / 24); h %= 24;
  return t("age_d", { d, h });
}

/** Time to a forecast level: "6 min", "45 s", "1 h 20 min". */
export function fmtEta(seconds) {
  const s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return t("eta_s", { n: s });
  const m = Math.round(s / 60);
  if (m < 60) return t("eta_m", { n: m });
  return t("eta_h", { h: Math.floor(m / 60), m: m % 60 });
}

/** "红色 6 分钟后" / "red in 6 min" for an alert's `forecast` ({level, eta_s, slope_per_min}); "" if none. */
export function fmtForecast(forecast) {
  if (!forecast || typeof forecast !== "object" || LEVEL_RANK[forecast.level] === undefined) return "";
  const eta = Number(forecast.eta_s);
  const level = t("level_lower_" + forecast.level);
  if (!Number.isFinite(eta)) return "";
  if (eta < 1) return t("forecast_now", { level });
  return t("forecast", { level, eta: fmtEta(eta) });
}

export function forecastTitle(forecast) {
  if (!fmtForecast(forecast)) return "";
  const slope = Number(forecast.slope_per_min);
  return t("forecast_title", {
    slope: Number.isFinite(slope) ? (slope > 0 ? "+" : "") + fmtNum(slope) : "?",
    level: levelName(forecast.level), eta: fmtEta(forecast.eta_s)
  });
}
