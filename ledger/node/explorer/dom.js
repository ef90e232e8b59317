// Small DOM helpers: elements are built with createElement and text nodes, never from HTML strings,
// so nothing the chain holds (an address, a reason) can inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  return node;
}

/** An HTML element: h("a", {href: "#/"}, "home"). */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element, attributes as given (presentation attributes only: the CSP allows no inline style). */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** An integer as people read it: 1,000,000. Integers above 2^53 arrive as digit strings (see api()). */
export function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string") return value.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  return String(value);
}

/** A share in [0, 1] as a percentage with one decimal; "—" for none (null). */
export function pct(share) {
  if (share === null || share === undefined) return "—";
  return (share * 100).toFixed(1) + "%";
}

/** A Unix time in seconds as UTC. */
export function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

/** The first digits of a long hex string, the whole in a tooltip. */
export function short(hex, digits = 12) {
  return hex && hex.length > digits ? hex.slice(0, digits) + "…" : hex;
}

export function blockLink(ref, label) {
  return h("a", { href: `#/block/${ref}`, class: "mono" }, label ?? String(ref));
}

export function txLink(id) {
  return h("a", { href: `#/tx/${id}`, class: "mono", title: id }, short(id));
}

export function accountLink(address) {
  if (!address) return "—";
  return h("a", { href: `#/account/${address}`, class: "mono", title: address }, short(address, 16));
}

const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d",
                 "#ff9da6", "#3b3b98"];
const assigned = new Map();

/** Give the validators (sorted by address) the palette in turn, so every page colours them alike. */
export function knowValidators(list) {
  [...list].map((v) => v.address).sort().forEach((address, i) => assigned.set(address, PALETTE[i % PALETTE.length]));
}

/** A validator's colour: from the palette once known, else a hue from its address. */
export function colour(address) {
  if (assigned.has(address)) return assigned.get(address);
  let hash = 0;
  for (const ch of address || "") hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 60% 45%)`;
}

/** A definition list from [label, value, key] rows; key names the dd for tests and styling.
 *  kind "cards" shows each pair as a tile (the overview's numbers). */
export function facts(rows, kind = "list") {
  return h("dl", { class: `facts ${kind}` }, rows.map(([label, value, key]) => h("div", null,
    h("dt", null, label),
    h("dd", key ? { "data-stat": key } : null, value),
  )));
}

/** Replace el's children; if keyboard focus was on a link inside el, put it back on the new link to the
 *  same place: a poll that rebuilds a table must not throw a keyboard user back to the page's top. */
export function replaceKeepingFocus(el, ...children) {
  const focused = el.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
  el.replaceChildren(...children);
  if (focused) [...el.querySelectorAll("a[href]")].find((a) => a.getAttribute("href") === focused)?.focus();
}

/** A table from headers and rows of cells; the caption names what it holds. */
export function table(caption, headers, rows, attrs) {
  return h("div", { class: "scroll" }, h("table", attrs,
    caption ? h("caption", null, caption) : null,
    h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", null, rows.map((cells) => h("tr", null, cells.map((c) => h("td", null, c)))))));
}
