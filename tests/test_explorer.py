"""The block explorer in a real browser: Debian's ``chromium`` driven by Playwright for Python, against
a real ``posctl node run`` on a chain with several validators and a few dozen blocks.

Every page loads with no console error (a Content-Security-Policy violation is one), shows the
numbers the API answers, draws one mark per datum in its charts, never sends a request off the
loopback address, and is photographed under the test's temp directory; the overview follows a new
block without a reload. The browser is the system's, never a download: without it these tests fail
and say to ``apt-get install chromium``.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from ledger.chain.facade import Chain
from ledger.consensus.evidence import make_evidence
from ledger.consensus.genesis import GenesisConfig
from ledger.node.explorer import ASSETS, CONTENT_SECURITY_POLICY
from ledger.params import Params
from tests.ledgerkit import Key, make_key, make_proposal
from tests.test_node import CHAIN_ID, ROOT, NodeProcess, cookie_header, request, signed, submit

BONDS = (4_000, 2_000, 1_000, 500, 300)
"""Five validators with unequal stakes, so the luck chart has something to compare. The last never
proposes (it misses its turns) and equivocates once: it is slashed and tombstoned."""

EQUIVOCATION_HEIGHT = 14

BLOCKS = 24
"""Blocks forged before the browser opens."""

PHONE = {"width": 375, "height": 740}


# ---- the chain and the node ----------------------------------------------------------------------


@dataclass
class Explorer:
    node: NodeProcess
    home: Path
    validators: list[Key]
    users: list[Key]
    nonces: dict[str, int] = field(default_factory=dict)
    tx_ids: list[str] = field(default_factory=list)
    evidence_id: str = ""

    @property
    def honest(self) -> list[Key]:
        return self.validators[:-1]

    @property
    def cheater(self) -> Key:
        return self.validators[-1]

    @property
    def url(self) -> str:
        return self.node.url

    def get(self, path: str) -> Any:
        status, body = request(self.node.port, "GET", path)
        assert status == 200, (path, body)
        return body

    def next_nonce(self, key: Key) -> int:
        nonce = self.nonces.get(key.address, 0)
        self.nonces[key.address] = nonce + 1
        return nonce

    def send(self, key: Key, kind: str, **fields: Any) -> str:
        tx = signed(key, self.next_nonce(key), kind, **fields)
        status, body = submit(self.node.port, tx)
        assert status == 200, body
        self.tx_ids.append(tx.id_hex)
        return tx.id_hex

    def propose(self, proposers: list[Key]) -> None:
        """Everyone in ``proposers`` proposes a reading for the next height."""
        status = self.get("/status")
        seed = bytes.fromhex(status["next_seed"])
        for key in proposers:
            i = self.validators.index(key)
            bpm = round(62 + 6 * i + 5 * math.sin(status["height"] / 3 + i))  # a resting heart, per validator
            tx = make_proposal(key, self.next_nonce(key), status["height"] + 1, seed, bpm, CHAIN_ID)
            code, body = submit(self.node.port, tx)
            assert code == 200, body

    def forge(self, proposers: list[Key]) -> dict[str, Any]:
        """Everyone in ``proposers`` proposes a reading for the next height, then the node forges."""
        self.propose(proposers)
        code, block = request(self.node.port, "POST", "/forge", headers=cookie_header(self.home))
        assert code == 200 and block["forged"] is True, block
        return block

    def equivocate(self, key: Key) -> str:
        """Two different signed proposals of ``key`` for the next height, sent as evidence."""
        status = self.get("/status")
        height, seed = status["height"] + 1, bytes.fromhex(status["next_seed"])
        nonce = self.nonces.get(key.address, 0)
        evidence = make_evidence(make_proposal(key, nonce, height, seed, 70, CHAIN_ID),
                                 make_proposal(key, nonce, height, seed, 71, CHAIN_ID))
        code, body = request(self.node.port, "POST", "/evidence", evidence.encode(),
                             {"Content-Type": "application/json"})
        assert code == 200, body
        return body["evidence_id"]


def make_chain(home: Path, bonds: tuple[int, ...] = BONDS) -> tuple[list[Key], list[Key]]:
    validators = [make_key(f"explorer-validator-{i}") for i in range(len(bonds))]
    users = [make_key(f"explorer-user-{i}") for i in range(2)]
    config = GenesisConfig(
        params=Params(chain_id=CHAIN_ID),
        allocations={**{k.address: 1_000_000 for k in users}, **{v.address: 10_000 for v in validators}},
        bonds={v.address: bond for v, bond in zip(validators, bonds)},
        timestamp=1_700_000_000,
    )
    Chain.create(home, config).close()
    return validators, users


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    home = tmp_path_factory.mktemp("explorer") / "home"
    validators, users = make_chain(home)
    node = NodeProcess(home, None, 3600).wait_ready()  # forges only when asked
    try:
        ex = Explorer(node, home, validators, users)
        alice, bob = users
        for height in range(1, BLOCKS + 1):
            if height == 3:
                ex.send(alice, "transfer", to=bob.address, amount=1_234)
            if height == 5:
                ex.send(validators[3], "stake", amount=300)
            if height == BLOCKS - 2:  # still unbonding at the tip
                ex.send(validators[1], "unstake", amount=250)
            if height == EQUIVOCATION_HEIGHT:
                ex.evidence_id = ex.equivocate(ex.cheater)
            # Usually every honest validator proposes; sometimes only the smaller ones do, so some draws
            # pass validators over.
            ex.forge(ex.honest if height % 4 else ex.honest[2:])
        yield ex
    finally:
        node.kill()


@pytest.fixture
def young(tmp_path: Path) -> Iterator[Explorer]:
    """A chain at height 0 with two validators (and two users), its node forging only when asked."""
    home = tmp_path / "young" / "home"
    validators, users = make_chain(home, BONDS[:2])
    node = NodeProcess(home, None, 3600).wait_ready()
    try:
        yield Explorer(node, home, validators, users)
    finally:
        node.kill()


# ---- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no chromium on PATH: the explorer's tests need Debian's browser: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    page: Page
    errors: list[str]
    off_loopback: list[str]
    requests: list[str]


def _watch(page: Page) -> Watched:
    watched = Watched(page, [], [], [])

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    def on_request(req: Request) -> None:
        watched.requests.append(req.url)
        parts = urlsplit(req.url)
        if parts.scheme not in ("data", "blob") and parts.hostname != "127.0.0.1":
            watched.off_loopback.append(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    page.on("request", on_request)
    return watched


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    """A page in a fresh context; after the test, no console error and no request off loopback."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    watched = _watch(context.new_page())
    try:
        yield watched
    finally:
        context.close()
    assert watched.errors == []
    assert watched.off_loopback == []


def open_page(tab: Watched, url: str, fragment: str) -> Page:
    """Go to ``url/#/fragment`` and wait until the explorer has rendered it."""
    page = tab.page
    if page.url.startswith(url):
        page.evaluate("() => { delete document.getElementById('main').dataset.ready }")
    page.goto(f"{url}/#/{fragment}")
    page.wait_for_selector("main[data-ready]", timeout=15_000)
    error = page.query_selector("main .error")
    assert error is None, error.inner_text()
    return page


def stat(page: Page, key: str) -> str:
    return page.inner_text(f"[data-stat='{key}']").strip()


def number(text: str) -> int:
    digits = text.replace(",", "").strip()
    assert re.fullmatch(r"\d+", digits), text
    return int(digits)


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screens" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


def rows(page: Page, table_id: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#{table_id} tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent.trim()))")


def binomial_band(p: float, n: int) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of Binomial(n, p), over n: the luck chart's band, worked out here."""
    cdf, low = 0.0, None
    for k in range(n + 1):
        cdf += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if low is None and cdf >= 0.025:
            low = k
        if cdf >= 0.975:
            return low / n, k / n
    raise AssertionError("the binomial's mass does not reach 97.5%")


def count(page: Page, selector: str) -> int:
    return page.eval_on_selector_all(selector, "nodes => nodes.length")


# ---- HTTP: JSON for clients, the explorer for browsers ---------------------------------------------


def test_root_answers_json_to_clients_and_the_explorer_to_browsers(explorer: Explorer) -> None:
    status, index = request(explorer.node.port, "GET", "/")
    assert status == 200 and "GET /status" in index["routes"] and "GET /explorer/{name}" in index["routes"]
    status, index = request(explorer.node.port, "GET", "/", headers={"Accept": "application/json"})
    assert status == 200 and "GET /status" in index["routes"]

    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    req = urllib.request.Request(explorer.url + "/", headers={"Accept": browser_accept})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as response:
        html = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Vary"] == "Accept"
    assert '<script type="module" src="/explorer/app.js">' in html
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "connect-src 'self'" in CONTENT_SECURITY_POLICY

    for name in ASSETS:
        status, body = request(explorer.node.port, "GET", f"/explorer/{name}")
        assert status == 200 and len(body) > 100, name
    status, body = request(explorer.node.port, "GET", "/explorer/..%2Fapi.py")
    assert status == 404 and body["type"] == "NotFound"
    status, body = request(explorer.node.port, "GET", "/explorer/nothing.js")
    assert status == 404 and "no file 'nothing.js'" in body["error"]


def test_a_wheel_ships_the_explorer(tmp_path: Path) -> None:
    """A non-editable install serves the explorer too: its files are package data in the wheel."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns(".*", "__pycache__", "build", "dist", "*.egg-info", "tests", "docs", "bench")
    shutil.copytree(ROOT, source, ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("posctl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"ledger/node/explorer/{name}" for name in ASSETS} <= names


def test_node_run_prints_the_explorer_url(explorer: Explorer) -> None:
    assert f"explorer: open {explorer.url}/ in a browser" in explorer.node.output()


# ---- every page, in the browser ----------------------------------------------------------------------


def test_overview(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    page = open_page(tab, explorer.url, "")
    status = explorer.get("/status")
    for key in ("height", "supply", "bonded", "burned", "mempool", "unbonding"):
        assert number(stat(page, key)) == status[key], key
    assert status["burned"] > 0  # the equivocation's slash
    assert stat(page, "validators") == f"{status['validators']} ({status['eligible_validators']} eligible)"
    assert stat(page, "chain_id") == CHAIN_ID
    latest = explorer.get("/blocks?last=10")
    table = rows(page, "latest-blocks")
    assert [number(r[0]) for r in table] == [b["height"] for b in latest]
    assert [number(r[3]) for r in table] == [len(b["txs"]) for b in latest]
    shot(page, tmp_path, "overview")


def test_block_page_explains_the_draw(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    blocks = explorer.get(f"/blocks?from=1&to={BLOCKS}")
    # a block whose draw passed someone over (only the small validators proposed): the richest trace
    block = max(blocks, key=lambda b: (len(b["lottery"]["trace"]), len(b["txs"])))
    assert len(block["lottery"]["trace"]) >= 2, "the chain was meant to have a draw with a passed-over validator"
    page = open_page(tab, explorer.url, f"block/{block['height']}")
    assert number(stat(page, "height")) == block["height"]
    assert stat(page, "hash") == block["hash"]
    assert stat(page, "seed") == block["lottery"]["seed"] == block["seed"]
    assert stat(page, "vrf_output") == block["vrf_output"]
    assert number(stat(page, "eligible_total")) == block["lottery"]["eligible_total"]
    assert page.get_attribute("[data-stat='validator'] a", "href") == f"#/account/{block['validator']}"
    trace = block["lottery"]["trace"]
    assert count(page, "#draw-chart svg rect.range") == len(trace)
    assert count(page, "#draw-chart svg circle.r") == len(trace)
    assert count(page, "#draw-chart svg rect.range.won") == 1
    drawn = rows(page, "draw-table")
    assert [number(r[5]) for r in drawn] == [e["r"] for e in trace]
    assert [r[6] for r in drawn] == [f"{e['odds'] * 100:.1f}%" for e in trace]
    assert [r[7] for r in drawn] == ["yes" if e["proposed"] else "no" for e in trace]
    label = page.get_attribute("#draw-chart svg", "aria-label")
    assert all(f"r={e['r']} of {e['remaining']}" in label for e in trace)
    assert [r[1] for r in rows(page, "block-txs")] == [tx["id"][:12] + "…" for tx in block["txs"]]
    shot(page, tmp_path, "block")

    (with_evidence,) = [b for b in blocks if b["evidence"]]
    page = open_page(tab, explorer.url, f"block/{with_evidence['height']}")
    (row,) = rows(page, "block-evidence")
    assert row[0] == explorer.evidence_id[:12] + "…" and number(row[2]) == with_evidence["height"]
    assert page.get_attribute("#block-evidence tbody a", "href") == f"#/account/{explorer.cheater.address}"

    genesis = open_page(tab, explorer.url, "block/0")
    assert number(stat(genesis, "height")) == 0 and "Genesis has no draw" in genesis.inner_text("main")


def test_tx_page(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    where = explorer.get(f"/txs/{explorer.tx_ids[0]}")
    page = open_page(tab, explorer.url, f"tx/{explorer.tx_ids[0]}")
    assert stat(page, "status") == where["status"] == "included"
    assert number(stat(page, "height")) == where["height"]
    assert number(stat(page, "index")) == where["index"]
    assert stat(page, "block_hash") == where["block_hash"]
    assert number(stat(page, "tx-amount")) == where["tx"]["amount"] == 1_234
    assert page.get_attribute("[data-stat='tx-to'] a", "href") == f"#/account/{where['tx']['to']}"
    shot(page, tmp_path, "tx")


def test_account_and_validator_pages(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    routes = set(explorer.get("/")["routes"])
    validators = {v["address"]: v for v in explorer.get("/validators")}
    unbonder = explorer.validators[1].address
    account = explorer.get(f"/accounts/{unbonder}")
    assert account["unbonding"], "the chain was meant to hold an unbonding entry"
    page = open_page(tab, explorer.url, f"account/{unbonder}")
    assert page.inner_text("h1") == "Validator"
    for key in ("balance", "bonded", "missed", "slashed"):
        assert number(stat(page, key)) == account[key], key
    assert stat(page, "status") == account["status"]
    assert number(stat(page, "blocks_won")) == validators[unbonder]["blocks_won"]
    assert [(number(r[0]), number(r[1])) for r in rows(page, "unbonding")] == \
        [(u["amount"], u["release_height"]) for u in account["unbonding"]]
    if "GET /accounts/{address}/history" in routes:
        history = explorer.get(f"/accounts/{unbonder}/history?limit=50")
        assert len(rows(page, "history")) == len(history)
    else:
        assert "history unavailable" in page.inner_text("#history-unavailable")
    shot(page, tmp_path, "validator")

    cheater = explorer.get(f"/accounts/{explorer.cheater.address}")
    assert cheater["status"] == "tombstoned" and cheater["slashed"] > 0
    page = open_page(tab, explorer.url, f"account/{explorer.cheater.address}")
    for key in ("bonded", "missed", "slashed"):
        assert number(stat(page, key)) == cheater[key], key
    assert stat(page, "status") == "tombstoned"

    user = explorer.users[1].address
    account = explorer.get(f"/accounts/{user}")
    page = open_page(tab, explorer.url, f"account/{user}")
    assert page.inner_text("h1") == "Account"
    assert number(stat(page, "balance")) == account["balance"] == 1_001_234
    assert number(stat(page, "blocks_won")) == 0
    shot(page, tmp_path, "account")


def test_validators_page_and_luck_chart(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    validators = explorer.get("/validators")
    height = explorer.get("/status")["height"]
    page = open_page(tab, explorer.url, "validators")
    table = rows(page, "validators-table")
    assert len(table) == len(validators) == len(BONDS)
    assert [number(r[2]) for r in table] == [v["bonded"] for v in validators]
    assert [number(r[6]) for r in table] == [v["blocks_won"] for v in validators]
    assert sum(number(r[6]) for r in table) == height
    assert [r[5] for r in table] == [
        "–".join(f"{q * 100:.1f}%" for q in binomial_band(v["expected_share"], height)) for v in validators]
    assert count(page, "#luck-chart svg circle.actual") == len(validators)
    assert count(page, "#luck-chart svg rect.band") == len(validators)
    assert count(page, "#luck-chart svg line.expected") == len(validators)
    # each dot sits where the actual share puts it: the dots are ordered as the shares are
    xs = page.eval_on_selector_all("#luck-chart svg circle.actual", "cs => cs.map(c => +c.getAttribute('cx'))")
    order = sorted(range(len(validators)), key=lambda i: xs[i])
    assert [validators[i]["actual_share"] for i in order] == sorted(v["actual_share"] for v in validators)
    label = page.get_attribute("#luck-chart svg", "aria-label")
    assert all(v["address"] in label for v in validators)
    shot(page, tmp_path, "validators")


def test_validators_page_before_the_first_block(young: Explorer, tab: Watched) -> None:
    """At height 0 no one has an actual share of blocks yet (the API says 0.0): the pages show "—", no
    luck and no dot, rather than 0.0% and a luck of 0%; after one block the shares are there."""
    assert young.get("/status")["height"] == 0
    page = open_page(tab, young.url, "validators")
    table = rows(page, "validators-table")
    assert len(table) == 2 and [(r[6], r[7], r[8]) for r in table] == [("0", "—", "—")] * 2
    assert count(page, "#luck-chart svg circle.actual") == 0
    assert count(page, "#luck-chart svg line.expected") == 2
    assert "actual 0.0%" not in page.get_attribute("#luck-chart svg", "aria-label")
    page = open_page(tab, young.url, f"account/{young.validators[0].address}")
    assert stat(page, "actual_share") == "—"

    young.forge(young.validators)
    validators = young.get("/validators")
    page = open_page(tab, young.url, "validators")
    table = rows(page, "validators-table")
    assert [r[7] for r in table] == [f"{v['actual_share'] * 100:.1f}%" for v in validators]
    assert [r[8] for r in table] == [f"{v['actual_share'] / v['expected_share'] * 100:.0f}%" for v in validators]
    assert count(page, "#luck-chart svg circle.actual") == 2


def test_heart_rates_page(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    blocks = explorer.get("/blocks?last=100")
    readings = [(b["height"], t["sender"], t["bpm"]) for b in blocks for t in b["txs"] if t["kind"] == "bpm"]
    page = open_page(tab, explorer.url, "heart")
    assert count(page, "#heart-chart svg circle.reading") == len(readings) > BLOCKS
    assert count(page, "#heart-chart svg polyline.series") == len({sender for _, sender, _ in readings})
    table = rows(page, "heart-table")
    assert sorted((number(r[0]), number(r[2])) for r in table) == sorted((h, bpm) for h, _, bpm in readings)
    shot(page, tmp_path, "heart")


def test_stake_page(explorer: Explorer, tab: Watched, tmp_path: Path) -> None:
    status = explorer.get("/status")
    validators = explorer.get("/validators")
    page = open_page(tab, explorer.url, "stake")
    assert count(page, "#supply-chart svg rect.part") == 3
    assert count(page, "#stake-chart svg rect.bar") == len(validators)
    widths = page.eval_on_selector_all("#stake-chart svg rect.bar", "rs => rs.map(r => +r.getAttribute('width'))")
    assert widths == sorted(widths, reverse=True)  # validators come richest first, so do the bars
    supply = {r[0]: number(r[1]) for r in rows(page, "supply-table") if r[1] != "—"}
    for key in ("liquid", "bonded", "unbonding", "supply"):
        assert supply[key] == status[key], key
    assert [number(r[1]) for r in rows(page, "stake-table")] == [v["bonded"] for v in validators]
    shot(page, tmp_path, "stake")


def test_the_overview_follows_a_new_block_without_reload(explorer: Explorer, tab: Watched) -> None:
    page = open_page(tab, explorer.url, "")
    before = number(stat(page, "height"))
    page.evaluate("() => { window.sameDocument = true }")
    pending = explorer.send(explorer.users[0], "transfer", to=explorer.users[1].address, amount=5)
    page.wait_for_function("() => document.querySelector(\"[data-stat='mempool']\").innerText.trim() === '1'",
                           timeout=10_000)
    block = explorer.forge(explorer.validators)
    assert block["height"] == before + 1 and pending in {t["id"] for t in block["txs"]}
    page.wait_for_function(f"() => document.querySelector(\"[data-stat='height']\").innerText.trim() === "
                           f"'{block['height']}'", timeout=10_000)
    page.wait_for_function(f"() => document.querySelector('#latest-blocks tbody tr td').innerText.trim() === "
                           f"'{block['height']}'", timeout=10_000)
    assert page.evaluate("() => window.sameDocument") is True
    assert number(stat(page, "mempool")) == 0


PENDING_IDS = "[...document.querySelectorAll('#pending-txs tbody td:first-child a')].map(a => a.title).sort().join()"
"""The overview's pending tx ids, sorted and comma-joined, from the links' titles (cells show a prefix)."""


def test_the_pending_list_follows_a_block_that_keeps_the_count(young: Explorer, tab: Watched) -> None:
    """Both validators propose for every height, so the pool holds 2 before and after each block: the
    list must still be read again at a new height, not only when the count changes."""
    page = tab.page
    # The browser's timers stand still, so the page polls only when the test lets it: no poll can
    # see the pool empty between the forge and the next proposals.
    page.clock.install(time=1_700_000_000)
    page.clock.pause_at(1_700_000_001)  # seconds, as install()
    young.propose(young.validators)
    before = [tx["id"] for tx in young.get("/mempool")["txs"]]
    open_page(tab, young.url, "")
    page.wait_for_selector("#live[data-height='0']", timeout=10_000)  # the first poll, sent at load, is done
    assert page.evaluate(f"() => {PENDING_IDS}") == ",".join(sorted(before)) and len(before) == 2

    young.forge([])  # includes both proposals
    young.propose(young.validators)
    after = young.get("/mempool")
    assert after["count"] == len(before) and not set(before) & {tx["id"] for tx in after["txs"]}
    page.clock.run_for(1_500)  # milliseconds: POLL_MS, one poll
    page.wait_for_selector("#live[data-height='1']", timeout=10_000)
    page.wait_for_function(f"ids => {PENDING_IDS} === ids", arg=",".join(sorted(tx["id"] for tx in after["txs"])),
                           timeout=10_000)
    assert page.inner_text("#pending-txs caption") == "Pending transactions: 2"
    assert number(stat(page, "mempool")) == 2


def test_search_box(explorer: Explorer, tab: Watched) -> None:
    block = explorer.get("/blocks/9")
    page = open_page(tab, explorer.url, "")
    cases = [
        ("9", "#/block/9", lambda p: number(stat(p, "height")) == 9),
        (block["hash"], f"#/block/{block['hash']}", lambda p: number(stat(p, "height")) == 9),
        (explorer.tx_ids[0], f"#/tx/{explorer.tx_ids[0]}", lambda p: stat(p, "status") == "included"),
        (explorer.users[0].address, f"#/account/{explorer.users[0].address}",
         lambda p: page.inner_text("h1") == "Account"),
    ]
    # A unique hash prefix is resolved by the node (GET /blocks/<prefix>), where the node does that.
    prefix = block["hash"][:10]
    if request(explorer.node.port, "GET", f"/blocks/{prefix}")[0] == 200:
        cases.append((prefix, f"#/block/{prefix}", lambda p: stat(p, "hash") == block["hash"]))
    for query, fragment, check in cases:
        page.evaluate("() => { delete document.getElementById('main').dataset.ready }")
        page.fill("#q", query)
        page.click("#search button")
        page.wait_for_function(f"() => location.hash === {fragment!r}", timeout=10_000)
        page.wait_for_selector("main[data-ready]", timeout=10_000)
        assert check(page), query
        if query == block["hash"]:
            # 64 hex digits may be a tx id or a block hash: the explorer asks GET /txs/<id> first, and
            # the browser reports that request's 404 on the console. That one error, and no other:
            assert f"{explorer.url}/txs/{query}" in tab.requests
            assert tab.errors == ["Failed to load resource: the server responded with a status of 404 (Not Found)"]
            tab.errors.clear()


SEARCH_HINT = "search: type a height, a block hash (or 8+ of its first hex digits), a tx id or a pos1… address"


def test_a_bad_search_says_so_until_the_next_search_or_page(explorer: Explorer, tab: Watched) -> None:
    """The hint has its own place, announced to screen readers, which the poll of /status (every 1.5 s,
    rewriting the live height) leaves alone; the next search or page clears it."""
    page = open_page(tab, explorer.url, "")
    assert page.evaluate("() => document.getElementById('search-note')?.getAttribute('role')") == "status"
    shows_hint = f"() => document.getElementById('search-note')?.textContent === {SEARCH_HINT!r}"
    for query in ("alice", "569b931", "%"):  # a name, a hash prefix too short, a lone escape character
        page.evaluate("() => { document.getElementById('search-note').textContent = '' }")
        page.fill("#q", query)
        page.click("#search button")
        page.wait_for_function(shows_hint, timeout=10_000)
    for _ in range(2):
        page.wait_for_event("requestfinished", lambda r: r.url == f"{explorer.url}/status", timeout=10_000)
    page.wait_for_function("() => document.getElementById('live').textContent.startsWith('height')", timeout=10_000)
    assert page.evaluate(shows_hint) and page.evaluate("() => location.hash") == "#/"

    page.fill("#q", "9")  # the next search: it finds block 9 and the hint goes
    page.click("#search button")
    page.wait_for_function("() => location.hash === '#/block/9'", timeout=10_000)
    assert page.text_content("#search-note") == ""

    page.fill("#q", "alice")
    page.click("#search button")
    page.wait_for_function(shows_hint, timeout=10_000)
    page.click("nav >> text=Validators")  # another page: the hint goes
    page.wait_for_function("() => location.hash === '#/validators'", timeout=10_000)
    page.wait_for_function("() => document.getElementById('search-note').textContent === ''", timeout=10_000)


def test_a_percent_that_starts_no_escape_names_no_page(explorer: Explorer, tab: Watched) -> None:
    """The hash is percent-decoded: one that cannot be (a stray or cut-off escape) is a bad route like any
    other, both when the explorer opens there and when it is navigated there from another page."""
    page = tab.page
    for fragment in ("block/%E0%A4%A", "account/100%"):
        page.goto("about:blank")  # a fresh load, not a hash change
        page.goto(f"{explorer.url}/#/{fragment}")
        page.wait_for_selector("main[data-ready]", timeout=10_000)
        assert page.inner_text("main .error").startswith(f"error: no page {fragment}:")
        assert page.get_attribute("main", "data-page") == "none"

    page = open_page(tab, explorer.url, "validators")
    ready = page.get_attribute("main", "data-ready")
    page.evaluate("() => { location.hash = '#/account/100%' }")
    page.wait_for_function("ready => document.getElementById('main').dataset.ready !== ready", arg=ready,
                           timeout=10_000)
    assert page.inner_text("main .error").startswith("error: no page account/100%:")
    assert page.query_selector("#validators-table") is None  # not the previous page under the new address


def test_pages_fit_a_phone(explorer: Explorer, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    tab = _watch(context.new_page())
    try:
        for fragment in ("", "block/4", "validators", "heart", "stake", f"account/{explorer.validators[0].address}"):
            page = open_page(tab, explorer.url, fragment)
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (fragment, width)  # wide tables scroll inside their own box
            svg_width = page.evaluate("() => Math.max(0, ...[...document.querySelectorAll('main svg.chart')]"
                                      ".map(s => s.getBoundingClientRect().width))")
            assert svg_width <= PHONE["width"], fragment
            shot(page, tmp_path, "phone-" + (fragment.split("/")[0] or "overview"))
    finally:
        context.close()
    assert tab.errors == [] and tab.off_loopback == []


ACTIVE_HREF = "() => document.activeElement.getAttribute('href')"


def test_the_overview_keeps_keyboard_focus_across_polls_and_blocks(young: Explorer, tab: Watched) -> None:
    """The poll of /status every 1.5 s rebuilt the facts (and so the Tip link) each time: focus fell back
    to <body>. Now unchanged facts stay, and a table rebuilt for a new block focuses the same link again."""
    page = open_page(tab, young.url, "")
    tip = page.get_attribute("[data-stat='tip'] a", "href")
    page.focus("[data-stat='tip'] a")
    for _ in range(2):
        page.wait_for_event("requestfinished", lambda r: r.url == f"{young.url}/status", timeout=10_000)
    page.wait_for_timeout(300)  # the poll's answer handled
    assert page.evaluate(ACTIVE_HREF) == tip

    page.focus("#latest-blocks a[href='#/block/0']")
    young.forge(young.validators)
    page.wait_for_function("() => document.querySelector('#latest-blocks tbody tr td').innerText.trim() === '1'",
                           timeout=10_000)
    assert page.evaluate(ACTIVE_HREF) == "#/block/0"


def test_a_page_that_failed_to_load_recovers(explorer: Explorer, tab: Watched) -> None:
    """A page whose first load could not reach the node kept its error for good, though the header said
    "live" again: the next poll that reaches the node renders it anew. A click on a link to the page shown
    renders it again too (no hash changes, so no hashchange)."""
    page = tab.page
    page.route("**/validators", lambda route: route.abort())
    page.goto(f"{explorer.url}/#/validators")
    page.wait_for_selector("main[data-ready] .error", timeout=10_000)
    assert page.inner_text("main .error") == "error: Failed to fetch"
    page.unroute("**/validators")
    page.wait_for_selector("#validators-table", timeout=10_000)
    assert page.query_selector("main .error") is None
    # the failed load, and any retry a poll made before the route was let through
    assert tab.errors and set(tab.errors) == {"Failed to load resource: net::ERR_FAILED"}
    tab.errors.clear()

    ready = page.get_attribute("main", "data-ready")
    page.click("nav >> text=Validators")
    page.wait_for_function("ready => document.getElementById('main').dataset.ready !== ready", arg=ready,
                           timeout=10_000)
    assert page.evaluate("() => location.hash") == "#/validators" and page.query_selector("#validators-table")


def test_a_failed_route_index_is_not_remembered(explorer: Explorer, tab: Watched) -> None:
    """One failed GET / was kept for the session as "this node serves no routes": history said
    unavailable on every account until a reload. Now the page fails, is retried, and shows the history."""
    if "GET /accounts/{address}/history" not in explorer.get("/")["routes"]:
        pytest.skip("this node does not serve account history")
    page = tab.page
    index = f"{explorer.url}/"
    page.route(index, lambda route: route.abort() if route.request.resource_type == "fetch" else route.continue_())
    page.goto(f"{explorer.url}/#/account/{explorer.users[1].address}")
    page.wait_for_selector("main[data-ready]", timeout=10_000)
    page.unroute(index)
    page.wait_for_selector("#history", timeout=10_000)
    assert page.query_selector("#history-unavailable") is None
    assert set(tab.errors) <= {"Failed to load resource: net::ERR_FAILED"}
    tab.errors.clear()


def test_the_tx_page_formats_an_amount_above_2_53(explorer: Explorer, tab: Watched) -> None:
    """api.js keeps an integer above 2^53 as its digits (a string): the tx page formatted numbers only,
    so such an amount lost its thousands separators. The node's answer is rewritten here to hold one."""
    tx_id = explorer.tx_ids[0]
    page = tab.page

    def big(route: Any) -> None:
        response = route.fetch()
        text, n = re.subn(r'"amount":\s*1234\b', '"amount": 9007199254740993', response.text())
        assert n == 1, text
        route.fulfill(response=response, body=text)

    page.route(f"{explorer.url}/txs/{tx_id}", big)
    page = open_page(tab, explorer.url, f"tx/{tx_id}")
    assert stat(page, "tx-amount") == "9,007,199,254,740,993"
    assert stat(page, "tx-chain_id") == CHAIN_ID
