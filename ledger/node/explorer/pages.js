// The explorer's pages. Each fills `body` from the API and may return onStatus(status), which the
// shell calls with every GET /status it polls, so a page can follow the chain without a reload.

import { api, ApiFailure, serves } from "./api.js";
import { h, fmt, pct, when, short, facts, table, replaceKeepingFocus, blockLink, txLink, accountLink, colour,
         knowValidators } from "./dom.js";
import { drawTrace, hbars, stackedBar, luckChart, lineChart, band, swatch } from "./charts.js";

const LATEST = 10;
/** Blocks listed on the overview. */

const HEART_BLOCKS = 100;
/** Blocks the heart-rate page reads: one GET /blocks?last=100, the most one request returns. */

const HISTORY_LIMIT = 50;

function section(title, ...children) {
  return h("section", null, h("h2", null, title), ...children);
}

/** A tx's own fields in a few words: what a row in a table needs. */
function summary(tx) {
  switch (tx.kind) {
    case "transfer": return [fmt(tx.amount), " to ", accountLink(tx.to)];
    case "stake": return `bond ${fmt(tx.amount)}`;
    case "unstake": return `unbond ${fmt(tx.amount)}`;
    case "bpm": return `${tx.bpm} BPM for height ${tx.height}`;
    case "unjail": return "unjail";
    default: return tx.kind;
  }
}

// ---- overview ------------------------------------------------------------------------------------

function statusFacts(st) {
  return facts([
    ["Height", fmt(st.height), "height"],
    ["Supply", fmt(st.supply), "supply"],
    ["Bonded", fmt(st.bonded), "bonded"],
    ["Unbonding", fmt(st.unbonding), "unbonding"],
    ["Burned", fmt(st.burned), "burned"],
    ["Pending txs", fmt(st.mempool), "mempool"],
    ["Validators", `${fmt(st.validators)} (${fmt(st.eligible_validators)} eligible)`, "validators"],
    ["Chain", st.chain_id, "chain_id"],
    ["Tip", blockLink(st.tip, short(st.tip, 16)), "tip"],
    ["Tip time", when(st.timestamp), "timestamp"],
  ], "cards");
}

function latestTable(blocks) {
  return table(`The latest ${blocks.length} blocks`, ["Height", "Hash", "Validator", "Txs", "Time"],
    blocks.map((b) => [blockLink(b.height), blockLink(b.hash, short(b.hash)), accountLink(b.validator),
                       fmt(b.txs.length), when(b.timestamp)]),
    { id: "latest-blocks" });
}

async function pendingList() {
  if (!(await serves("GET /mempool"))) return null;
  const pool = await api(`/mempool?limit=${LATEST}`);
  return table(`Pending transactions: ${fmt(pool.count)}${pool.count > pool.txs.length ? `, the first ${pool.txs.length}` : ""}`,
    ["Tx", "Kind", "Sender", "Nonce", "Bytes"],
    pool.txs.map((tx) => [txLink(tx.id), tx.kind, accountLink(tx.sender), fmt(tx.nonce), fmt(tx.size)]),
    { id: "pending-txs" });
}

export async function overview(body) {
  const [st, blocks] = await Promise.all([api("/status"), api(`/blocks?last=${LATEST}`)]);
  const stats = h("div", { id: "stats" }, statusFacts(st));
  const latest = h("div", { id: "latest" }, latestTable(blocks));
  const pending = h("div", { id: "pending" }, await pendingList());
  body.append(h("h1", null, "Overview"), stats, section("Latest blocks", latest), pending);
  let shown = st.height, shownMempool = st.mempool;
  return async (now) => {
    // Only when they would show something else: replacing them every poll dropped the keyboard focus
    const fresh = statusFacts(now);
    if (fresh.outerHTML !== stats.firstChild.outerHTML) replaceKeepingFocus(stats, fresh);
    if (now.height !== shown) replaceKeepingFocus(latest, latestTable(await api(`/blocks?last=${LATEST}`)));
    // A new height alone makes the pending list stale: a block can take its txs while new ones keep the
    // count (every validator proposes for each height: always as many pending).
    if (now.height !== shown || now.mempool !== shownMempool) replaceKeepingFocus(pending, await pendingList() || "");
    // Only once both are shown: a failed read is tried again at the next poll.
    shown = now.height;
    shownMempool = now.mempool;
  };
}

// ---- block ---------------------------------------------------------------------------------------

function drawSection(b) {
  const lot = b.lottery;
  if (!lot.trace.length) {
    return section("The draw", h("p", null, b.height === 0 ? "Genesis has no draw: it is the chain's starting state."
                                                           : "This block records no draw."));
  }
  const rows = lot.trace.map((e) => [e.position, accountLink(e.address), fmt(e.bonded), fmt(e.remaining),
    `[${fmt(e.range[0])}, ${fmt(e.range[1])})`, fmt(e.r), pct(e.odds), e.proposed ? "yes" : "no"]);
  return section("The draw",
    h("p", null, "The seed fixes an order over every eligible validator. Each draw picks r uniformly among the stake ",
      "not yet drawn; the validator whose range holds r is next, with odds = its stake / the stake left. ",
      "The first validator drawn that had proposed for this height wins the block."),
    facts([["Seed", h("span", { class: "mono wrap" }, lot.seed), "seed"],
           ["VRF output", h("span", { class: "mono wrap" }, b.vrf_output), "vrf_output"],
           ["Eligible stake", fmt(lot.eligible_total), "eligible_total"],
           ["Winner", accountLink(lot.winner), "winner"]]),
    h("figure", { id: "draw-chart" }, drawTrace(lot, lot.winner),
      h("figcaption", null, "Bar: stake not yet drawn. Coloured: the drawn validator's range (its odds). Mark: r.")),
    table("Each draw", ["#", "Validator", "Bonded", "Stake left", "Range", "r", "Odds", "Proposed"], rows,
      { id: "draw-table" }));
}

export async function block(body, ref) {
  const [b, st, list] = await Promise.all([api(`/blocks/${encodeURIComponent(ref)}`), api("/status"), api("/validators")]);
  knowValidators(list);
  const next = h("span", null);
  const showNext = (height) => next.replaceChildren(
    height > b.height ? h("a", { href: `#/block/${b.height + 1}`, id: "next-block" }, `block ${b.height + 1} →`) : "");
  showNext(st.height);
  const nav = h("p", { class: "pager" },
    b.height > 0 ? blockLink(b.height - 1, `← block ${b.height - 1}`) : h("span", null), next);
  body.append(
    h("h1", null, `Block ${fmt(b.height)}`), nav,
    facts([
      ["Height", fmt(b.height), "height"],
      ["Hash", h("span", { class: "mono wrap" }, b.hash), "hash"],
      ["Parent", b.height > 0 ? h("a", { href: `#/block/${b.height - 1}`, class: "mono wrap" }, b.prev_hash) : h("span", { class: "mono wrap" }, b.prev_hash), "prev_hash"],
      ["Time", when(b.timestamp), "timestamp"],
      ["Validator", accountLink(b.validator), "validator"],
      ["Tx root", h("span", { class: "mono wrap" }, b.tx_root), "tx_root"],
      ["Evidence root", h("span", { class: "mono wrap" }, b.evidence_root), "evidence_root"],
      ["State root", h("span", { class: "mono wrap" }, b.state_root), "state_root"],
    ]),
    drawSection(b),
    section(`Transactions (${b.txs.length})`,
      table(null, ["#", "Tx", "Kind", "Sender", "What"],
        b.txs.map((tx, i) => [i, txLink(tx.id), tx.kind, accountLink(tx.sender), summary(tx)]), { id: "block-txs" })),
    section(`Evidence (${b.evidence.length})`,
      b.evidence.length
        ? table(null, ["Evidence", "Validator", "Height", "First proposal", "Second proposal"],
            b.evidence.map((e) => [h("span", { class: "mono" }, short(e.id)), accountLink(e.validator), fmt(e.height),
                                   short(e.first.id), short(e.second.id)]), { id: "block-evidence" })
        : h("p", null, "No evidence of equivocation in this block.")),
  );
  return (now) => showNext(now.height);
}

// ---- tx ------------------------------------------------------------------------------------------

/** A tx field that holds an integer: a number, or the digits api.js keeps for one above 2^53 (16 to 20 of
 *  them; the hex fields are longer, and the chain id is a name, however it is spelled). */
function integerField(name, value) {
  return typeof value === "number" || (name !== "chain_id" && /^-?\d{16,20}$/.test(value));
}

export async function tx(body, id) {
  const where = await api(`/txs/${id}`);
  const t = where.tx;
  const rows = [["Status", where.status, "status"]];
  if (where.status === "included") {
    rows.push(["Block", blockLink(where.height), "height"], ["Index", fmt(where.index), "index"],
              ["Block hash", blockLink(where.block_hash, where.block_hash), "block_hash"]);
  } else if (where.status === "evicted") {
    rows.push(["Evicted at height", fmt(where.height), "height"], ["Reason", where.reason, "reason"]);
  }
  const fields = Object.entries(t).map(([name, value]) => [name,
    name === "sender" || name === "to" ? accountLink(value) :
    h("span", { class: typeof value === "string" && value.length > 40 ? "mono wrap" : "mono" },
      integerField(name, value) ? fmt(value) : String(value)), `tx-${name}`]);
  body.append(h("h1", null, `Transaction ${short(t.id, 16)}`), facts(rows), section("Fields", facts(fields)));
}

/** A validator's actual share of blocks, or null before the first block: GET /validators says 0.0 then,
 *  which would read as a validator that lost every draw. */
function actualShare(v, height) {
  return height ? v.actual_share : null;
}

// ---- account / validator -------------------------------------------------------------------------

async function historySection(address) {
  const unavailable = (why) => h("p", { class: "note", id: "history-unavailable" }, `history unavailable: ${why}`);
  if (!(await serves("GET /accounts/{address}/history"))) {
    return section("History", unavailable("this node does not serve GET /accounts/{address}/history"));
  }
  let list;
  try {
    list = await api(`/accounts/${address}/history?limit=${HISTORY_LIMIT}`);
  } catch (error) {
    // 404, or a chain created before the address index existed: the rest of the page still stands
    if (error instanceof ApiFailure) return section("History", unavailable(error.message));
    throw error;
  }
  const present = (x) => x !== null && x !== undefined;
  return section(list.length < HISTORY_LIMIT ? `History (${list.length})` : `History (the newest ${list.length})`,
    table(null, ["Tx", "Block", "#", "Kind", "Direction", "Counterparty", "Amount", "Status"],
      list.map((r) => [present(r.tx_id) ? txLink(r.tx_id) : "genesis", present(r.height) ? blockLink(r.height) : "—",
                       present(r.index) ? fmt(r.index) : "—", r.kind, r.direction, accountLink(r.counterparty),
                       fmt(r.amount), r.status]),
      { id: "history" }));
}

export async function account(body, address) {
  const [acct, st, validators] = await Promise.all([api(`/accounts/${encodeURIComponent(address)}`), api("/status"),
                                                    api("/validators")]);
  const row = validators.find((v) => v.address === acct.address);
  const rows = [
    ["Address", h("span", { class: "mono wrap" }, acct.address), "address"],
    ["Liquid", fmt(acct.balance), "balance"],
    ["Bonded", fmt(acct.bonded), "bonded"],
    ["Status", acct.status, "status"],
    ["Nonce", `${fmt(acct.nonce)} applied, ${fmt(acct.pending)} pending (next ${fmt(acct.next_nonce)})`, "nonce"],
    ["Blocks won", row ? fmt(row.blocks_won) : "0", "blocks_won"],
    ["Missed turns", fmt(acct.missed), "missed"],
    ["Slashed", fmt(acct.slashed), "slashed"],
  ];
  if (row) {
    const [lo, hi] = band(row.expected_share, st.height);
    rows.push(["Share of stake", pct(row.share), "share"],
              ["Expected share of blocks", `${pct(row.expected_share)} (95% band ${pct(lo)}–${pct(hi)})`, "expected_share"],
              ["Actual share of blocks", pct(actualShare(row, st.height)), "actual_share"]);
  }
  body.append(h("h1", null, row ? "Validator" : "Account"), facts(rows),
    section("Unbonding",
      acct.unbonding.length
        ? table(null, ["Amount", "Release height", "Blocks to go"],
            acct.unbonding.map((u) => [fmt(u.amount),
                                       u.release_height <= st.height ? blockLink(u.release_height, fmt(u.release_height))
                                                                     : fmt(u.release_height),
                                       fmt(Math.max(u.release_height - st.height, 0))]), { id: "unbonding" })
        : h("p", null, "Nothing unbonding.")),
    await historySection(acct.address));
}

// ---- validators ----------------------------------------------------------------------------------

export async function validators(body) {
  const [st, list] = await Promise.all([api("/status"), api("/validators")]);
  knowValidators(list);
  const n = st.height;
  const shown = list.map((v) => ({ ...v, actual_share: actualShare(v, n) }));
  const rows = shown.map((v) => {
    const [lo, hi] = band(v.expected_share, n);
    const luck = v.expected_share && v.actual_share !== null ? v.actual_share / v.expected_share : null;
    return [h("span", null, swatch(v.address), " ", accountLink(v.address)), v.status, fmt(v.bonded), pct(v.share),
            pct(v.expected_share), `${pct(lo)}–${pct(hi)}`, fmt(v.blocks_won), pct(v.actual_share),
            luck === null ? "—" : `${(luck * 100).toFixed(0)}%`, fmt(v.missed), fmt(v.slashed)];
  });
  body.append(h("h1", null, `Validators (${list.length})`),
    table(null, ["Validator", "Status", "Bonded", "Stake share", "Expected", "95% band", "Blocks won", "Actual",
                 "Luck", "Missed", "Slashed"], rows, { id: "validators-table" }),
    section("Luck: expected against actual share",
      h("p", null, `Over the ${fmt(n)} blocks since genesis, a fair lottery gives each validator about its share `,
        "of the eligible stake (the line). 95% of the time its actual share (the dot) falls inside the grey band: ",
        "the 2.5% to 97.5% quantiles of a binomial over that many blocks, so about one validator in twenty ",
        "sits outside it by chance alone. Luck is actual ÷ expected. The expected share is today's stake: ",
        "a validator whose stake changed over time, or was not always eligible, is compared with its stake now."),
      h("figure", { id: "luck-chart" }, luckChart(shown, n))));
}

// ---- heart rates ---------------------------------------------------------------------------------

export async function heart(body) {
  const [blocks, list] = await Promise.all([api(`/blocks?last=${HEART_BLOCKS}`), api("/validators")]);
  knowValidators(list);
  const readings = blocks.flatMap((b) => b.txs.filter((t) => t.kind === "bpm")
    .map((t) => ({ height: b.height, address: t.sender, bpm: t.bpm, winner: b.validator === t.sender })))
    .sort((a, b) => a.height - b.height || a.address.localeCompare(b.address));
  body.append(h("h1", null, "Heart rates"),
    h("p", null, `Each validator's BPM readings, the payload of its proposals, in the last ${blocks.length} blocks `,
      `(${readings.length} readings).`));
  if (!readings.length) {
    body.append(h("p", null, "No readings yet."));
    return;
  }
  const series = new Map();
  for (const r of readings) {
    if (!series.has(r.address)) series.set(r.address, []);
    series.get(r.address).push({ x: r.height, y: r.bpm });
  }
  body.append(
    h("figure", { id: "heart-chart" }, lineChart(series, `BPM readings over height: ${readings.map((r) =>
      `${short(r.address, 14)} ${r.bpm} at ${r.height}`).join(", ")}`, "BPM"),
      h("figcaption", null, h("ul", { class: "legend" },
        [...series.keys()].map((a) => h("li", null, swatch(a), " ", accountLink(a), ` (${series.get(a).length})`))))),
    h("details", null, h("summary", null, "The readings as a table"),
      table(null, ["Height", "Validator", "BPM", "Won the block"],
        readings.map((r) => [blockLink(r.height), accountLink(r.address), fmt(r.bpm), r.winner ? "yes" : ""]),
        { id: "heart-table" })));
}

// ---- stake distribution --------------------------------------------------------------------------

export async function stake(body) {
  const [st, list] = await Promise.all([api("/status"), api("/validators")]);
  knowValidators(list);
  const parts = [
    { label: "liquid", value: st.liquid, colour: "#8fa8c8" },
    { label: "bonded", value: st.bonded, colour: "#1f4e79" },
    { label: "unbonding", value: st.unbonding, colour: "#c98a2b" },
  ];
  body.append(h("h1", null, "Stake distribution"),
    section("How the supply is held",
      h("figure", { id: "supply-chart" }, stackedBar(parts, `Supply ${st.supply}: ` +
        parts.map((p) => `${p.label} ${p.value}`).join(", "))),
      table(null, ["Held as", "Amount", "Share"], [
        ...parts.map((p) => [p.label, fmt(p.value), pct(Number(p.value) / (Number(st.supply) || 1))]),
        ["supply", fmt(st.supply), "100%"], ["burned (gone)", fmt(st.burned), ""],
        ["issued as rewards", fmt(st.rewards), ""]], { id: "supply-table" })),
    section("Bonded stake per validator",
      h("figure", { id: "stake-chart" }, hbars(list.map((v) => ({ label: short(v.address, 16), value: v.bonded,
        colour: colour(v.address) })), `Bonded stake: ${list.map((v) => `${v.address} ${v.bonded}`).join(", ")}`)),
      table(null, ["Validator", "Bonded", "Share of bonded", "Status"],
        list.map((v) => [accountLink(v.address), fmt(v.bonded), pct(v.share), v.status]), { id: "stake-table" })));
}
