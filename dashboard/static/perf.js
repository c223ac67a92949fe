/* Script time of the page's own work (board render, map frame, websocket message), for the
 * frame budget: under a flood of events each should stay far below 50 ms. Read through
 * window.lifeline.perf by tests and diagnostics. */

const spans = new Map();  // name -> {count, total, max}

export function record(name, ms) {
  let s = spans.get(name);
  if (!s) { s = { count: 0, total: 0, max: 0 }; spans.set(name, s); }
  s.count += 1;
  s.total += ms;
  if (ms > s.max) s.max = ms;
}

export function snapshot() {
  const out = {};
  for (const [name, s] of spans) out[name] = { count: s.count, totalMs: +s.total.toFixed(1), maxMs: +s.max.toFixed(2) };
  return out;
}

export function reset() { spans.clear(); }
