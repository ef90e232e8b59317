"""Text renderers: the views of :mod:`ledger.chain.views` (and the backend) turned into pages a
student can read.

Every function takes the same JSON-ready dict that ``--json`` prints, so text and JSON can
never disagree about a value: text only chooses the layout. Addresses are shown in full (they
are what people copy); hashes are shortened where a full one would only be noise, and in full
where someone may want to paste them into the next command. ``names`` maps addresses to wallet
names, so ``pos1…`` can be followed by ``(alice)`` when the wallet is local.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

Names = Mapping[str, str]
"""Address → local wallet name, for labels only."""

LABEL_WIDTH = 12
"""Width of the label column in key/value blocks."""


# ---- small helpers ---------------------------------------------------------------------------


def short_hash(value: str | None, keep: int = 8) -> str:
    """``85b53e0f…78e18f``: enough of a hash to recognise it, not to paste it."""
    if not value:
        return "-"
    if len(value) <= 2 * keep + 1:
        return value
    return f"{value[:keep]}…{value[-6:]}"


def format_time(timestamp: int | None) -> str:
    """Seconds since the epoch as UTC ISO-8601 (``2026-11-21T22:29:02Z``)."""
    if timestamp is None:
        return "-"
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # beyond what a date can show: print the number
        return f"{timestamp} (Unix seconds)"


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def label(address: str | None, names: Names | None = None) -> str:
    """An address, followed by its local wallet name when there is one."""
    if not address:
        return "-"
    name = (names or {}).get(address)
    return f"{address} ({name})" if name else address


def _rows(pairs: Sequence[tuple[str, Any]], indent: str = "  ") -> list[str]:
    return [f"{indent}{key:<{LABEL_WIDTH}}{value}" for key, value in pairs]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int], indent: str = "  ") -> list[str]:
    """Aligned columns; ``right`` holds the indexes of right-aligned (numeric) columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers)] + [line(row) for row in rows]


# ---- accounts --------------------------------------------------------------------------------


def render_account(view: dict[str, Any], name: str | None = None) -> str:
    """An account view (``ledger.chain.views.account_view``, optionally with ``public_key``, ``xpub``,
    ``account``, ``height``) as a short page: what is spendable, what is locked and until when."""
    title = f"Wallet {name}" if name else "Account"
    if name and "account" in view:
        title += f" (account {view['account']})"
    lines = [title]
    pairs: list[tuple[str, Any]] = [("address", view["address"])]
    if view.get("path"):
        pairs.append(("path", view["path"]))
    if view.get("public_key"):
        pairs.append(("public key", view["public_key"]))
    if view.get("xpub"):
        pairs.append(("xpub", view["xpub"]))
    if view.get("kdf"):
        pairs.append(("kdf", view["kdf"]))
    balance, bonded = view.get("balance", 0), view.get("bonded", 0)
    unbonding = view.get("unbonding") or []
    locked = sum(entry["amount"] for entry in unbonding)
    pairs += [
        ("balance", f"{balance} liquid (spendable)"),
        ("bonded", f"{bonded} staked (the lottery weight; not spendable)"),
    ]
    if unbonding:
        pairs.append(("unbonding", f"{locked} locked until released:"))
    else:
        pairs.append(("unbonding", "none"))
    lines += _rows(pairs)
    height = view.get("height")
    for entry in unbonding:
        when = f"released at height {entry['release_height']}"
        if isinstance(height, int) and entry["release_height"] > height:
            when += f" (in {entry['release_height'] - height} blocks)"
        lines.append(f"  {'':<{LABEL_WIDTH}}  {entry['amount']:>8}  {when}")
    status = view.get("status")
    if status and (status != "below_min_stake" or bonded):
        text = {"active": "active validator (in the draw)", "jailed": "jailed: missed too many turns; "
                "`posctl wallet unjail` brings it back", "tombstoned": "tombstoned: slashed for equivocation, "
                "never in the draw again", "below_min_stake": "bonded below min_stake: not in the draw"}[status]
        lines += _rows([("validator", text)])
    if view.get("slashed"):
        lines += _rows([("slashed", f"{view['slashed']} taken for equivocation")])
    nonce = view.get("nonce", 0)
    pending = view.get("pending", 0)
    nonce_text = f"{nonce} txs included"
    if pending:
        nonce_text += f", {pending} pending (next nonce {view.get('next_nonce', nonce + pending)})"
    lines += _rows([("nonce", nonce_text)])
    return "\n".join(lines)


# ---- blocks and transactions -----------------------------------------------------------------


def _tx_detail(tx: dict[str, Any], names: Names | None = None) -> str:
    kind = tx["kind"]
    if kind == "transfer":
        return f"{tx['amount']} → {label(tx['to'], names)}"
    if kind in ("stake", "unstake"):
        return f"{tx['amount']}"
    if kind == "bpm":
        return f"bpm {tx['bpm']} for height {tx['height']}"
    return ""


def render_lottery(view: dict[str, Any], names: Names | None = None) -> list[str]:
    """The draw step by step: the seed's fixed order over the eligible validators, each draw's r
    and the range it fell in, who was passed over for not proposing, and the winner."""
    lottery = view.get("lottery") or {}
    trace = lottery.get("trace") or []
    if not trace:
        return ["  Lottery     none (genesis has no draw)"]
    total = lottery.get("eligible_total", trace[0]["remaining"])
    lines = [
        f"  Lottery     seed {short_hash(lottery.get('seed'))}, {total} bonded among the eligible validators;",
        "              the seed fixes an order (r uniform in [0, stake not yet drawn), the validator",
        "              whose range holds r comes next); the first in that order who proposed wins",
    ]
    rows = []
    previous = 0
    for entry in trace:
        if entry["position"] != previous + 1:
            rows.append(["…", f"{entry['position'] - previous - 1} more drawn, none proposed", "", "", "", ""])
        previous = entry["position"]
        lo, hi = entry["range"]
        odds = f"{entry['bonded']}/{entry['remaining']} = {format_percent(entry['odds'])}"
        outcome = "◀ proposed: winner" if entry["proposed"] else "passed over: no proposal"
        rows.append([
            f"d{entry['position']}", label(entry["address"], names), odds, str(entry["r"]), f"[{lo}, {hi})", outcome,
        ])
    lines += _table(["draw", "validator", "odds", "r", "range", ""], rows, right={3}, indent="    ")
    lines.append(f"    winner: {label(lottery.get('winner'), names)}")
    return lines


def render_evidence(items: Sequence[dict[str, Any]], names: Names | None = None) -> list[str]:
    if not items:
        return []
    lines = [f"  Evidence    {len(items)} equivocation(s) slashed in this block"]
    for item in items:
        lines.append(
            f"    {short_hash(item['id'])}  {label(item['validator'], names)} signed two proposals for "
            f"height {item['height']}: {short_hash(item['first']['id'])} and {short_hash(item['second']['id'])}"
        )
    return lines


def render_block(view: dict[str, Any], names: Names | None = None) -> str:
    """A block: header, the draw explained, transactions, evidence."""
    lines = [f"Block {view['height']}"]
    lines += _rows([
        ("hash", view["hash"]),
        ("prev hash", short_hash(view["prev_hash"])),
        ("time", format_time(view["timestamp"])),
        ("validator", label(view.get("validator"), names) if view.get("validator") else "none (genesis)"),
        ("seed", f"{short_hash(view.get('seed'))}  (from the parent's seed and VRF output)"
         if view.get("validator") else short_hash(view.get("seed"))),
        ("vrf output", f"{short_hash(view.get('vrf_output'))}  (the winner's; it seeds the next block)"
         if view.get("validator") else "none"),
        ("state root", short_hash(view["state_root"])),
    ])
    lines += render_lottery(view, names)
    txs = view.get("txs") or []
    if not txs:
        lines.append("  Txs         none")
    else:
        lines.append(f"  Txs         {len(txs)}")
        rows = [
            [short_hash(tx["id"]), tx["kind"], label(tx["sender"], names), str(tx["nonce"]), _tx_detail(tx, names)]
            for tx in txs
        ]
        lines += _table(["id", "kind", "sender", "nonce", "detail"], rows, right={3}, indent="    ")
    lines += render_evidence(view.get("evidence") or [], names)
    return "\n".join(lines)


def render_blocks(views: Sequence[dict[str, Any]], names: Names | None = None) -> str:
    return "\n\n".join(render_block(view, names) for view in views)


def render_forge(view: dict[str, Any], names: Names | None = None) -> str:
    """A forged block, or the one line saying why there is none; evictions either way."""
    if view.get("forged") is False:
        lines = [f"no block: {view.get('reason')}"]
    else:
        lines = [f"Forged block {view['height']}: {label(view.get('validator'), names)} won the lottery", ""]
        lines.append(render_block(view, names))
    evicted = view.get("evicted") or []
    if evicted:
        lines.append(f"Evicted {len(evicted)} tx(s) that can no longer apply:")
        lines += [f"  {short_hash(e['id'])}  {e['reason']}" for e in evicted]
    return "\n".join(lines)


def render_tx(view: dict[str, Any], names: Names | None = None) -> str:
    """``chain tx``: where the tx is (pending, included, evicted) and its fields."""
    tx = view["tx"]
    status = view["status"]
    if status == "included":
        where = f"included in block {view['height']}"
        if "index" in view:
            where += f" (position {view['index']})"
    elif status == "evicted":
        where = f"evicted at height {view.get('height')}: {view.get('reason')}"
    else:
        where = "pending in the mempool (waiting for the next block)"
    lines = [f"Transaction {tx['id']}"]
    pairs: list[tuple[str, Any]] = [("status", where)]
    if view.get("block_hash"):
        pairs.append(("block hash", view["block_hash"]))
    pairs += [
        ("kind", tx["kind"]),
        ("sender", label(tx["sender"], names)),
        ("nonce", tx["nonce"]),
    ]
    if "to" in tx:
        pairs.append(("to", label(tx["to"], names)))
    if "amount" in tx:
        pairs.append(("amount", tx["amount"]))
    if "bpm" in tx:
        pairs.append(("bpm", tx["bpm"]))
    if "height" in tx:
        pairs.append(("for height", tx["height"]))
    if "vrf_proof" in tx:
        pairs.append(("vrf proof", short_hash(tx["vrf_proof"])))
    pairs += [("chain id", tx.get("chain_id", "-")), ("signature", short_hash(tx.get("signature")))]
    lines += _rows(pairs)
    return "\n".join(lines)


# ---- chain summaries -------------------------------------------------------------------------


def render_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items() if key != "chain_id")


def render_status(view: dict[str, Any]) -> str:
    lines = [f"Chain {view['chain_id']} at height {view['height']}"]
    params = view.get("params") or {}
    pairs: list[tuple[str, Any]] = [
        ("tip", f"{view['tip']}"),
        ("time", format_time(view.get("timestamp"))),
        ("mempool", f"{view['mempool']} pending tx(s)"),
    ]
    validators = f"{view['validators']} (bonded, or with a validator history)"
    if "eligible_validators" in view:
        validators += f", {view['eligible_validators']} eligible"
    if "min_stake" in params:
        validators += f" (min_stake {params['min_stake']})"
    pairs.append(("validators", validators))
    if {"liquid", "unbonding"} <= view.keys():
        pairs.append((
            "supply",
            f"{view['supply']} = {view['liquid']} liquid + {view['bonded']} bonded + {view['unbonding']} unbonding",
        ))
    else:
        pairs.append(("supply", view["supply"]))
    pairs.append(("bonded", view["bonded"]))
    if "issued" in view:
        pairs.append(("issued", f"{view['issued']} (genesis + {view.get('rewards', 0)} in block rewards)"))
    if "burned" in view:
        pairs.append(("burned", f"{view['burned']} (slashed and destroyed; supply = issued - burned)"))
    if view.get("evidence_pending"):
        pairs.append(("evidence", f"{view['evidence_pending']} pending (slashed in the next block)"))
    if params:
        pairs.append(("params", render_params(params)))
    lines += _rows(pairs)
    return "\n".join(lines)


def render_validators(rows: Sequence[dict[str, Any]], names: Names | None = None, height: int | None = None) -> str:
    """Bonded stake, share, and how the lottery has actually treated each validator so far."""
    if not rows:
        return "No validators: nobody has bonded stake."
    table = []
    for row in rows:
        eligible = row.get("eligible", True)
        table.append([
            label(row["address"], names),
            str(row["bonded"]),
            row.get("status", "active"),
            format_percent(row["share"]),
            str(row["blocks_won"]),
            format_percent(row.get("expected_share", row["share"])) if eligible else "not eligible",
            format_percent(row["actual_share"]) if "actual_share" in row else "-",
            str(row.get("missed", 0)),
            str(row.get("slashed", 0)),
        ])
    lines = _table(
        ["validator", "bonded", "status", "share", "blocks won", "expected", "actual", "missed", "slashed"],
        table, right={1, 3, 4, 5, 6, 7, 8}, indent="",
    )
    total = sum(row["bonded"] for row in rows)
    blocks = f"{height} blocks forged" if height is not None else "blocks forged"
    lines.append("")
    lines.append(f"share    = bonded / {total} (all bonded stake)")
    lines.append("expected = bonded / eligible bonded: the lottery odds when every eligible validator proposes")
    lines.append(f"actual   = blocks won / {blocks} since genesis")
    lines.append("missed   = turns in a row drawn first without a proposal (jailed at max_missed);")
    lines.append("slashed  = tokens taken for equivocation (the validator is tombstoned)")
    return "\n".join(lines)


def render_verify(view: dict[str, Any]) -> str:
    if view.get("mode") == "last":
        low = view["height"] - view["blocks"] + 1
        return (
            f"last {view['blocks']} blocks verified: heights {low}..{view['height']} ({view['txs']} txs) in "
            f"{view['seconds']:.2f} s; links, hash, tx and address indexes, signatures and VRF proofs match "
            "(run `posctl chain verify` without --last to replay the state from genesis)"
        )
    text = (
        f"chain verified: heights 0..{view['height']} ({view['blocks']} blocks, {view['txs']} txs) "
        f"replayed from genesis in {view['seconds']:.2f} s; every hash, signature, lottery draw and "
        "state root matches"
    )
    if view.get("address_index") is False:
        text += " (this chain has no address index: it was made before posctl kept one)"
    return text


def render_history(address: str, rows: Sequence[dict[str, Any]], names: Names | None = None,
                   limit: int | None = None, who: str | None = None, included_before: int | None = None) -> str:
    """``chain history``: one line per tx, newest first, pending ones on top; a full page ends
    with the command for the next one (``included_before``: the height below which the included
    txs start, when pending ones filled the page)."""
    if not rows:
        return f"No transactions sent or received by {label(address, names)}."
    table = []
    for row in rows:
        where = "pending" if row["status"] == "pending" else str(row["height"])
        arrow = "→" if row["direction"] == "sent" else "←"
        other = f"{arrow} {label(row['counterparty'], names)}" if row["counterparty"] else ""
        if row["kind"] == "genesis":
            other = "← genesis funding (liquid + bonded)"
        amount = "" if row["amount"] is None else str(row["amount"])
        table.append([where, row["kind"], row["direction"], amount, other, row["tx_id"] or "-"])
    lines = [f"History of {label(address, names)}, newest first ({len(rows)} shown)"]
    lines += _table(["height", "kind", "direction", "amount", "counterparty", "tx"], table, right={3})
    last = rows[-1]
    page = f" --limit {limit}" if limit is not None and limit != 20 else ""
    if included_before is not None:
        lines.append(f"Included: posctl chain history {who or address} --before {included_before}{page}")
    elif limit is not None and len(rows) >= limit and last["status"] != "pending" and (last["height"], last["index"]) != (0, 0):
        lines.append(f"Older: posctl chain history {who or address} --before {last['height']}:{last['index']}{page}")
    return "\n".join(lines)


def render_mempool(view: dict[str, Any], names: Names | None = None) -> str:
    """``chain mempool``: the pool's size, then its txs in arrival order."""
    count, txs = view["count"], view["txs"]
    title = f"Mempool: {count} pending tx(s), {view['bytes']} bytes"
    if not txs:
        return title
    if len(txs) < count:
        title += f" (the first {len(txs)} listed; --limit N for more)"
    rows = [[tx["id"], tx["kind"], label(tx["sender"], names), str(tx["nonce"]), str(tx["size"])] for tx in txs]
    return "\n".join([title] + _table(["id", "kind", "sender", "nonce", "size"], rows, right={3, 4}))


INIT_ROWS = 20
"""Allocation rows ``chain init`` prints; the rest are counted."""


def render_init(view: dict[str, Any], names: Names | None = None) -> str:
    lines = [f"Created chain {view['chain_id']} in {view['home']}"]
    lines += _rows([
        ("genesis", view["genesis_hash"]),
        ("time", format_time(view["timestamp"])),
        ("supply", f"{view['supply']} = {view['liquid']} liquid + {view['bonded']} bonded"),
        ("params", render_params(view["params"])),
    ])
    for title, key in (("allocations (liquid)", "allocations"), ("bonds (staked)", "bonds")):
        amounts = view[key]
        if amounts:
            lines.append(f"  {title}")
            # a genesis may hold a million accounts: the first rows say enough (--json has all)
            shown = list(itertools.islice(amounts.items(), INIT_ROWS))
            lines += _table(
                ["address", "amount"], [[label(a, names), str(v)] for a, v in shown], right={1}, indent="    "
            )[1:]
            total = view.get(f"{key[:-1]}_count", len(amounts))
            if total > INIT_ROWS:
                lines.append(f"    … and {total - INIT_ROWS:,} more ({total:,} in all; --json lists every one)")
    return "\n".join(lines)
