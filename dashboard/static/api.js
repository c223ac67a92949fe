/* The REST client of the page: the session's token and JSON requests with readable errors. */

import { t } from "./i18n.js";

const TOKEN_KEY = "lifeline.token";  // sessionStorage: the token lives as long as the tab

let token = null;
let onUnauthorized = () => {};

function ssGet(key) { try { return sessionStorage.getItem(key); } catch (e) { return null; } }
function ssSet(key, val) { try { sessionStorage.setItem(key, val); } catch (e) { /* ignore */ } }
function ssDel(key) { try { sessionStorage.removeItem(key); } catch (e) { /* ignore */ } }

export function getToken() { return token; }
export function storedToken() { return ssGet(TOKEN_KEY); }
export function setToken(value) { token = value || null; if (token) ssSet(TOKEN_KEY, token); else ssDel(TOKEN_KEY); }
export function whenUnauthorized(handler) { onUnauthorized = handler; }

/** The token from `?token=` (kept for the session and removed from the address bar), else the stored one. */
export function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl !== null) {
    if (fromUrl) ssSet(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    const clean = url.pathname + (url.searchParams.toString() ? "?" + url.searchParams.toString() : "") + url.hash;
    try { window.history.replaceState(window.history.state, "", clean); } catch (e) { /* ignore */ }
  }
  token = ssGet(TOKEN_KEY);
  return token;
}

export function authHeaders() {
  const h = { "Accept": "application/json" };
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

/** Returns "ok", "unauthorized" or "unreachable". */
export async function probeAuth() {
  try {
    const r = await fetch("/api/alerts?open=true&limit=1", { headers: authHeaders(), cache: "no-store" });
    return r.status === 401 ? "unauthorized" : "ok";
  } catch (e) {
    return "unreachable";
  }
}

export function serverError(data) {
  if (!data) return "";
  if (typeof data.error === "string") return data.error;
  if (typeof data.detail === "string") return data.detail;
  if (data.detail && typeof data.detail.error === "string") return data.detail.error;
  if (Array.isArray(data.detail) && data.detail.length && data.detail[0].msg) return data.detail.map((d) => d.msg).join("; ");
  return "";
}

/** `{ok, status, data}` or `{ok: false, status, error}`; a 401 also calls the unauthorized handler. */
export async function api(method, path, body) {
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
  if (r.status === 401) { onUnauthorized(); return { ok: false, status: 401, error: t("token_rejected") }; }
  const serverMsg = serverError(data) || r.statusText || "";
  let error;
  if (r.status === 403) error = t("err_forbidden") + (serverMsg ? " (" + serverMsg + ")" : "");
  else if (r.status === 404) error = t("err_not_found");
  else if (r.status === 409) error = t("err_prefix", { msg: serverMsg || t("close_still_active") });
  else error = t("err_http", { status: r.status, msg: serverMsg });
  return { ok: false, status: r.status, error, serverMsg };
}

export const get = (path) => api("GET", path);
