/* Small DOM helpers shared by the page's modules: element creation and change-only updates
 * (writing the same text or attribute again costs style recalculation at 50 events/s). */

export const $ = (sel, root) => (root || document).querySelector(sel);

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

export function setText(node, text) { const s = String(text); if (node.textContent !== s) node.textContent = s; }
export function setAttr(node, name, val) { const s = String(val); if (node.getAttribute(name) !== s) node.setAttribute(name, s); }
export function setHidden(node, hidden) { if (node.hidden !== !!hidden) node.hidden = !!hidden; }

export function opt(value, label) { const o = el("option", null, label); o.value = value; return o; }

/** Replace a <select>'s options only when they changed, keeping the selection when still offered. */
export function fillSelect(select, options) {
  const sig = JSON.stringify(options);
  if (select._sig !== sig) {
    const value = select.value;
    select.replaceChildren(...options.map(([v, label]) => opt(v, label)));
    select._sig = sig;
    select.value = options.some(([v]) => v === value) ? value : "";
  }
}

/** Show a toast for `ms` (default 3.5 s; 0: the caller removes it). Returns its element. */
export function toast(text, kind, ms) {
  const box = $("#toasts");
  const n = el("div", "toast toast-" + (kind || "info"), text);
  box.append(n);
  while (box.children.length > 5) box.firstElementChild.remove();
  if (ms !== 0) setTimeout(() => { n.classList.add("leaving"); setTimeout(() => n.remove(), 400); }, ms || 3500);
  return n;
}
