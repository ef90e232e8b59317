// The explorer's shell: hash routing, the search box and the live poll of GET /status.

import { api, ApiFailure } from "./api.js";
import { h, fmt } from "./dom.js";
import { setWidth } from "./charts.js";
import * as pages from "./pages.js";

const POLL_MS = 1500;
/** How often the overview asks GET /status (a cached, lock-free read on the node). */

const ROUTES = [
  [/^$/, pages.overview],
  [/^block\/([^/]+)$/, pages.block],
  [/^tx\/([0-9a-fA-F]{64})$/, pages.tx],
  [/^account\/([^/]+)$/, pages.account],
  [/^validators$/, pages.validators],
  [/^heart$/, pages.heart],
  [/^stake$/, pages.stake],
];

const main = document.getElementById("main");
const searchNote = document.getElementById("search-note");
let generation = 0;
let current = null;
/** The shown page is an error the node may not give again (it was unreachable, or failed): the next
 *  poll that reaches it renders the page anew. An answer such as a 404 is not retried. */
let retry = false;

/** Say how a search went: in its own place, since the poll rewrites #live every POLL_MS. */
function tell(text) {
  searchNote.textContent = text;
}

function noPage(path) {
  return new ApiFailure(404, `no page ${path}: use the links above or the search box`);
}

/** The path the hash names, percent-decoded; one that cannot be (#/account/100%) names no page. */
function hashPath() {
  const raw = location.hash.replace(/^#\/?/, "");
  try {
    return decodeURIComponent(raw);
  } catch {
    throw noPage(raw);
  }
}

/** Render the page the hash names; a page returns an optional onStatus(status) for live updates. */
async function route() {
  const mine = ++generation;
  current = null;
  retry = false;
  tell("");  // a search's hint is about the page it was typed on
  const body = h("div", { class: "page" });
  let name = "none";
  setWidth(main.clientWidth - 40);  // a figure's padding and border inside main
  try {
    // Inside the try: a bad hash is this page's error, not an uncaught one that leaves the last page up
    const path = hashPath();
    const match = ROUTES.map(([re, page]) => [path.match(re), page]).find(([m]) => m);
    if (!match) throw noPage(path);
    name = path.split("/")[0] || "overview";
    const live = await match[1](body, ...match[0].slice(1));
    if (mine !== generation) return;
    current = live || null;
  } catch (error) {
    if (mine !== generation) return;
    retry = !(error instanceof ApiFailure) || error.status >= 500;
    body.replaceChildren(h("p", { class: "error", role: "alert" }, `error: ${error.message}`));
  }
  main.replaceChildren(body);
  main.dataset.page = name;
  main.dataset.ready = String(mine);
  document.body.dataset.ready = "yes";
}

/** What a search that names none of the things search() knows is told. */
const SEARCH_HINT = "search: type a height, a block hash (or 8+ of its first hex digits), a tx id or a pos1… address";

/** Where a search goes: a height, a block hash or prefix, a tx id, an address; null if none of those. */
async function search(text) {
  const q = text.trim();
  if (/^\d+$/.test(q)) return `#/block/${q}`;
  if (/^pos1[02-9ac-hj-np-z]+$/i.test(q)) return `#/account/${q.toLowerCase()}`;
  if (/^[0-9a-fA-F]{64}$/.test(q)) {
    try {
      await api(`/txs/${q}`);
      return `#/tx/${q.toLowerCase()}`;
    } catch (error) {
      if (!(error instanceof ApiFailure) || error.status !== 404) throw error;
      return `#/block/${q.toLowerCase()}`;
    }
  }
  if (/^[0-9a-fA-F]{8,63}$/.test(q)) return `#/block/${q.toLowerCase()}`;
  return null;
}

document.getElementById("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("q");
  tell("");
  try {
    const target = await search(input.value);
    if (!target) return tell(SEARCH_HINT);
    input.value = "";
    if (location.hash === target) route(); else location.hash = target;
  } catch (error) {
    tell(`search: ${error.message}`);
  }
});

let polling = false;
async function poll() {
  if (polling || document.hidden) return;
  polling = true;
  try {
    const status = await api("/status");
    const live = document.getElementById("live");
    live.textContent = `height ${fmt(status.height)} · live`;
    live.dataset.height = String(status.height);
    if (retry) await route();
    else if (current) await current(status);
  } catch (error) {
    document.getElementById("live").textContent = `node unreachable: ${error.message}`;
  } finally {
    polling = false;
  }
}

window.addEventListener("hashchange", route);
// A link to the page already shown changes no hash, so no hashchange: render it again, as a reader
// clicking it (after an error, say) expects.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='#']");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (link.hash !== location.hash) return;
  event.preventDefault();
  route();
});
route();
poll();
setInterval(poll, POLL_MS);
