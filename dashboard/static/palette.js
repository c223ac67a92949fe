/* Colours shared by the canvas map and charts (the CSS has the same values as variables). */

export const LEVEL_COLOURS = { red: "#e53935", orange: "#fb8c00", yellow: "#fdd835", blue: "#1e88e5" };
export const LEVEL_FILLS = {
  red: "rgba(229, 57, 53, 0.24)", orange: "rgba(251, 140, 0, 0.20)",
  yellow: "rgba(253, 216, 53, 0.09)", blue: "rgba(30, 136, 229, 0.12)"
};
export const NORMAL = "#26a69a";
export const SILENT = "#607d8b";
export const ACCENT = "#4fc3f7";
export const TEXT = "#e8eef6";
export const MUTED = "#7f91a8";
export const GRID = "rgba(127, 145, 168, 0.16)";
export const FONT = 'system-ui, -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif';

/** A canvas sized to its CSS box at the device pixel ratio; returns [ctx, width, height] in CSS px. */
export function fitCanvas(canvas, width, height) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, width || canvas.clientWidth), h = Math.max(1, height || canvas.clientHeight);
  const pw = Math.round(w * dpr), ph = Math.round(h * dpr);
  if (canvas.width !== pw || canvas.height !== ph) { canvas.width = pw; canvas.height = ph; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, w, h];
}
