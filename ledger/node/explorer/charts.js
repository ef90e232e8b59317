// The explorer's charts: SVG drawn here, no plotting library. Each chart is an <svg role="img"> with a
// <title> and an aria-label that state its numbers; every page also shows the same numbers in a table.
// Marks carry a class (bar, range, reading, actual…) so a reader, or a test, can count what was drawn.

import { s, colour, short, pct, fmt } from "./dom.js";

let WIDTH = 640;

/** Draw the next charts this many pixels wide (the page's width), so their text is read at 1:1. */
export function setWidth(pixels) {
  WIDTH = Math.round(Math.min(1000, Math.max(280, pixels)));
}

const narrow = () => WIDTH < 500;

function frame(height, label) {
  return s("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": label, class: "chart" },
    s("title", null, label));
}

/** Round tick values covering [lo, hi]: about `count` of them, at 1, 2 or 5 times a power of ten. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((x) => x >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * One block's draw, step by step. Each row is a draw: the bar is the stake not yet drawn (W_k), the
 * coloured segment is the drawn validator's range [lo, hi) in it (its odds), the mark is r. The first
 * drawn validator that had proposed is the winner.
 */
export function drawTrace(lottery, winner) {
  const rows = lottery.trace;
  const rowHeight = 50;
  const left = 10, right = WIDTH - 10, span = right - left;
  const label = `The draw of this block: ${rows.map((e) =>
    `draw ${e.position}: r=${e.r} of ${e.remaining} fell in [${e.range[0]}, ${e.range[1]}) of ${e.address}` +
    ` (odds ${pct(e.odds)}), ${e.proposed ? "proposed" : "had not proposed"}`).join("; ")}. Winner: ${winner || "none"}.`;
  const svg = frame(rows.length * rowHeight + 8, label);
  rows.forEach((e, i) => {
    const y = i * rowHeight + 6;
    const rem = Number(e.remaining) || 1;
    const x0 = left + span * Number(e.range[0]) / rem;
    const w = Math.max(span * (Number(e.range[1]) - Number(e.range[0])) / rem, 1.5);
    const xr = left + span * Number(e.r) / rem;
    const won = e.proposed && e.address === winner;
    const outcome = won ? "winner" : e.proposed ? "proposed" : narrow() ? "passed over" : "no proposal: passed over";
    svg.append(
      s("text", { x: left, y: y + 11, class: "label" },
        `draw ${e.position}: ${short(e.address, narrow() ? 10 : 14)} · odds ${pct(e.odds)} · ${outcome}`),
      s("rect", { x: left, y: y + 17, width: span, height: 16, class: "remaining" }),
      s("rect", { x: x0, y: y + 17, width: w, height: 16, fill: colour(e.address), class: won ? "range won" : "range" }),
      s("line", { x1: xr, x2: xr, y1: y + 15, y2: y + 36, class: "r-mark" }),
      s("circle", { cx: xr, cy: y + 38, r: 3.5, class: "r" }),
    );
  });
  return svg;
}

/**
 * Horizontal bars, one per item ({label, value, colour}), scaled to the largest value.
 */
export function hbars(items, label, format = fmt) {
  const rowHeight = 26, labelWidth = Math.min(150, WIDTH * 0.3), valueWidth = Math.min(120, WIDTH * 0.22);
  const span = WIDTH - labelWidth - valueWidth - 10;
  const max = Math.max(...items.map((x) => Number(x.value)), 1);
  const svg = frame(items.length * rowHeight + 6, label);
  items.forEach((item, i) => {
    const y = i * rowHeight + 4;
    svg.append(
      s("text", { x: 4, y: y + 15, class: "label" }, short(item.label, Math.floor(labelWidth / 8) - 1)),
      s("rect", { x: labelWidth, y, width: Math.max(span * Number(item.value) / max, 1), height: 18,
                  fill: item.colour, class: "bar" }),
      s("text", { x: WIDTH - valueWidth + 4, y: y + 15, class: "label" }, format(item.value)),
    );
  });
  return svg;
}

/** One bar split into parts ({label, value, colour}) in proportion: how the supply is held. */
export function stackedBar(parts, label) {
  const total = parts.reduce((sum, p) => sum + Number(p.value), 0) || 1;
  const svg = frame(70, label);
  let x = 0;
  parts.forEach((p) => {
    const w = WIDTH * Number(p.value) / total;
    svg.append(s("rect", { x, y: 4, width: Math.max(w, 0), height: 30, fill: p.colour, class: "part" },
      s("title", null, `${p.label}: ${fmt(p.value)}`)));
    x += w;
  });
  let lx = 0;
  parts.forEach((p) => {
    svg.append(s("rect", { x: lx, y: 46, width: 12, height: 12, fill: p.colour }),
      s("text", { x: lx + 16, y: 57, class: "label" }, `${p.label} ${pct(Number(p.value) / total)}`));
    lx += WIDTH / parts.length;
  });
  return svg;
}

const EXACT_BAND_UP_TO = 20000;
/** Blocks up to which the band is the binomial's own quantiles; above, its normal approximation. */

/**
 * The 95% band of the share of n blocks a validator with chance p wins: the 2.5% and 97.5% quantiles
 * of Binomial(n, p), divided by n.
 */
export function band(p, n) {
  if (!n) return [0, 1];
  if (p <= 0) return [0, 0];
  if (p >= 1) return [1, 1];
  if (n > EXACT_BAND_UP_TO) {
    const half = 1.96 * Math.sqrt(p * (1 - p) / n);
    return [Math.max(0, p - half), Math.min(1, p + half)];
  }
  const step = Math.log(p) - Math.log1p(-p);
  let logPmf = n * Math.log1p(-p), cdf = 0, lo = null;
  for (let k = 0; k <= n; k++) {
    cdf += Math.exp(logPmf);
    if (lo === null && cdf >= 0.025) lo = k;
    if (cdf >= 0.975) return [lo / n, k / n];
    logPmf += Math.log(n - k) - Math.log(k + 1) + step;
  }
  return [lo === null ? 1 : lo / n, 1];
}

/**
 * Luck: per validator, the expected share of blocks (its share of the eligible stake) with the band a
 * fair lottery keeps the actual share inside 95% of the time over n blocks, and the actual share (no
 * dot where it is null: no blocks yet).
 */
export function luckChart(rows, n) {
  const rowHeight = 34, labelWidth = Math.min(150, WIDTH * 0.3), right = WIDTH - 14;
  const span = right - labelWidth;
  const top = Math.min(1, Math.max(0.05, ...rows.map((v) => Math.max(band(v.expected_share, n)[1], v.actual_share))) * 1.1);
  const x = (share) => labelWidth + span * Math.min(share, top) / top;
  const label = `Expected against actual share of ${n} blocks: ` + rows.map((v) => {
    const [lo, hi] = band(v.expected_share, n);
    return `${v.address} expected ${pct(v.expected_share)} (95% band ${pct(lo)} to ${pct(hi)}), actual ${pct(v.actual_share)}`;
  }).join("; ");
  const svg = frame(rows.length * rowHeight + 34, label);
  for (const t of ticks(0, top, 5)) {
    svg.append(s("line", { x1: x(t), x2: x(t), y1: 0, y2: rows.length * rowHeight + 6, class: "grid" }),
      s("text", { x: x(t), y: rows.length * rowHeight + 24, class: "tick", "text-anchor": "middle" }, pct(t)));
  }
  rows.forEach((v, i) => {
    const y = i * rowHeight + 6;
    const [lo, hi] = band(v.expected_share, n);
    svg.append(
      s("text", { x: 4, y: y + 17, class: "label" }, short(v.address, Math.floor(labelWidth / 8) - 1)),
      s("rect", { x: x(lo), y: y + 4, width: Math.max(x(hi) - x(lo), 1), height: 18, class: "band" }),
      s("line", { x1: x(v.expected_share), x2: x(v.expected_share), y1: y + 1, y2: y + 25, class: "expected" }),
    );
    if (v.actual_share === null) return;
    svg.append(s("circle", { cx: x(v.actual_share), cy: y + 13, r: 6, fill: colour(v.address), class: "actual" },
      s("title", null, `${v.address}: actual ${pct(v.actual_share)}, expected ${pct(v.expected_share)}`)));
  });
  return svg;
}

/**
 * Lines over height: series is a Map address → [{x: height, y: value}], one polyline per series and a
 * circle per point.
 */
export function lineChart(series, label, yName) {
  const height = 300, left = 44, right = WIDTH - 10, top = 24, bottom = height - 30;
  const points = [...series.values()].flat();
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys) - 5, Math.max(...ys) + 5];
  const px = (v) => left + (right - left) * (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0));
  const py = (v) => bottom - (bottom - top) * (v - y0) / (y1 - y0);
  const svg = frame(height, label);
  for (const t of ticks(y0, y1, 5)) {
    svg.append(s("line", { x1: left, x2: right, y1: py(t), y2: py(t), class: "grid" }),
      s("text", { x: left - 6, y: py(t) + 4, class: "tick", "text-anchor": "end" }, String(t)));
  }
  for (const t of ticks(x0, x1, 6).filter(Number.isInteger)) {
    svg.append(s("text", { x: px(t), y: height - 10, class: "tick", "text-anchor": "middle" }, String(t)));
  }
  svg.append(s("text", { x: 4, y: 12, class: "tick" }, yName));
  for (const [address, list] of series) {
    const sorted = [...list].sort((a, b) => a.x - b.x);
    svg.append(s("polyline", { points: sorted.map((p) => `${px(p.x)},${py(p.y)}`).join(" "),
                               stroke: colour(address), class: "series" }));
    for (const p of sorted) {
      svg.append(s("circle", { cx: px(p.x), cy: py(p.y), r: 3.5, fill: colour(address), class: "reading" },
        s("title", null, `${address} at height ${p.x}: ${p.y} ${yName}`)));
    }
  }
  return svg;
}

/** A small square of a validator's colour, for legends. */
export function swatch(address) {
  return s("svg", { viewBox: "0 0 10 10", class: "swatch", "aria-hidden": "true" },
    s("rect", { width: 10, height: 10, fill: colour(address) }));
}
