"""A plain reference state against the ledger's cached working state and incremental root.

:class:`ReferenceState` keeps the accounts in a dict of plain records and applies a block the
way DESIGN.md describes it, in the simplest code that could work: no working-set cache, no
index bookkeeping done incrementally, no MuHash updates. After every block it rebuilds every
state entry from its dicts and hashes them from scratch (``statehash.hash_of_entries``). The
Hypothesis test forges random blocks with the real chain (``WorkingState`` decoding each entry
once, ``statehash.apply_changes`` updating the root by the touched entries only) and requires
both to agree on every entry and on the root after every block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings, strategies as st

from ledger import encoding
from ledger.chain.facade import Chain
from ledger.consensus import state, statehash
from ledger.consensus.blocks import Block
from ledger.consensus.evidence import make_evidence
from ledger.consensus.genesis import GenesisConfig
from ledger.consensus.transactions import Bpm, Stake, Transfer, Unjail, Unstake
from ledger.errors import LedgerError
from ledger.params import BPS, Params
from ledger.storage import schema
from ledger.storage.store import MemoryStore
from tests.ledgerkit import make_config, make_key, make_proposal, make_tx, propose

KEYS = [make_key(f"reference-{i}") for i in range(4)]
GENESIS_BONDS = {KEYS[0].address: 500, KEYS[1].address: 300}
GENESIS_LIQUID = {key.address: 1_000 for key in KEYS}
PARAMS = dict(min_stake=100, unbonding_blocks=2, block_reward=10, max_missed=2)


@dataclass
class Record:
    """One account, as plain as it gets."""

    balance: int = 0
    nonce: int = 0
    bonded: int = 0
    unbonding: list[list[int]] = field(default_factory=list)  # [amount, release_height]
    jailed: bool = False
    tombstoned: bool = False
    missed: int = 0
    slashed: int = 0


class ReferenceState:
    """Accounts in a dict; every entry and the root recomputed from scratch on request."""

    def __init__(self, config: GenesisConfig) -> None:
        self.params: Params = config.params
        self.accounts: dict[str, Record] = {}
        self.releases: dict[int, set[str]] = {}
        self.evidence_used: dict[bytes, int] = {}
        self.issued = self.rewards = self.burned = 0
        for address, amount in config.allocations.items():
            self.get(address).balance += amount
            self.issued += amount
        for address, amount in config.bonds.items():
            self.get(address).bonded += amount
            self.issued += amount

    def get(self, address: str) -> Record:
        return self.accounts.setdefault(address, Record())

    # -- a block, step by step as DESIGN.md decisions 15-17 order it --------------------------

    def apply(self, block: Block) -> None:
        height, params = block.height, self.params
        for address in sorted(self.releases.pop(height, set())):
            record = self.get(address)
            record.balance += sum(amount for amount, due in record.unbonding if due <= height)
            record.unbonding = [[amount, due] for amount, due in record.unbonding if due > height]
        proposers = set()
        for tx in block.txs:
            sender = self.get(tx.sender)
            assert tx.nonce == sender.nonce
            sender.nonce += 1
            match tx:
                case Transfer(to=to, amount=amount):
                    sender.balance -= amount
                    self.get(to).balance += amount
                case Stake(amount=amount):
                    sender.balance -= amount
                    sender.bonded += amount
                case Unstake(amount=amount):
                    self.unbond(tx.sender, amount, height + params.unbonding_blocks)
                case Bpm():
                    proposers.add(tx.sender)
                case Unjail():
                    sender.jailed, sender.missed = False, 0
        first = block.trace[0]
        if not first.proposed:
            record = self.get(first.address)
            record.missed += 1
            others = any(other != first.address and r.bonded >= params.min_stake and not r.jailed and not r.tombstoned
                         for other, r in self.accounts.items())  # never jail the last one in the draw
            record.jailed = record.jailed or (record.missed >= params.max_missed and others)
        for address in proposers:
            self.get(address).missed = 0
        for item in block.evidence:
            self.evidence_used[item.evidence_id] = height
            self.slash(item.validator, item.height, height, block.header.validator)
        self.get(block.header.validator).balance += params.block_reward
        self.issued += params.block_reward
        self.rewards += params.block_reward

    def unbond(self, address: str, amount: int, release_height: int) -> None:
        record = self.get(address)
        record.bonded -= amount
        record.unbonding.append([amount, release_height])
        self.releases.setdefault(release_height, set()).add(address)

    def slash(self, address: str, infraction: int, height: int, reporter: str) -> None:
        """Decision 17: the fraction of the bond and of every entry begun at or after the
        infraction; the whistleblower share to the block's validator, the rest burned; tombstoned,
        and the rest of the bond unbonding."""
        params, record = self.params, self.get(address)
        taken = record.bonded * params.slash_fraction_bps // BPS
        record.bonded -= taken
        kept = []
        for amount, due in record.unbonding:
            cut = amount * params.slash_fraction_bps // BPS if due - params.unbonding_blocks >= infraction else 0
            taken += cut
            if amount > cut:
                kept.append([amount - cut, due])
        record.unbonding = kept
        reward = taken * params.whistleblower_bps // BPS
        self.get(reporter).balance += reward
        self.burned += taken - reward
        record.slashed += taken
        record.tombstoned, record.jailed, record.missed = True, False, 0
        if record.bonded:
            self.unbond(address, record.bonded, height + params.unbonding_blocks)

    # -- the entries and the root, from scratch -----------------------------------------------

    def entries(self) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {state.PARAMS_STATE_KEY: encoding.encode(self.params.to_dict())}
        liquid = bonded = unbonding = 0
        for address, r in self.accounts.items():
            liquid, bonded = liquid + r.balance, bonded + r.bonded
            unbonding += sum(amount for amount, _ in r.unbonding)
            assert min(r.balance, r.bonded, *(amount for amount, _ in r.unbonding), 0) == 0  # nothing negative
            if r == Record():
                continue
            out[state.make_account_state_key(address)] = encoding.encode({
                "balance": r.balance, "nonce": r.nonce, "bonded": r.bonded, "unbonding": r.unbonding,
                "jailed": int(r.jailed), "tombstoned": int(r.tombstoned), "missed": r.missed, "slashed": r.slashed,
            })
            if r.bonded or r.jailed or r.tombstoned or r.slashed or r.missed:
                out[state.make_validator_state_key(address)] = b""
        out[state.TOTALS_STATE_KEY] = encoding.encode({
            "liquid": liquid, "bonded": bonded, "unbonding": unbonding,
            "issued": self.issued, "rewards": self.rewards, "burned": self.burned,
        })
        assert liquid + bonded + unbonding == self.issued - self.burned  # supply = genesis + rewards - burned
        for release_height, addresses in self.releases.items():
            if addresses:
                out[state.make_release_state_key(release_height)] = encoding.encode(sorted(addresses))
        for evidence_id, used in self.evidence_used.items():
            out[state.make_evidence_state_key(evidence_id)] = encoding.encode(used)
        return out

    def root(self) -> bytes:
        return statehash.hash_of_entries(self.entries().items()).digest()


def chain_entries(chain: Chain) -> dict[bytes, bytes]:
    start = len(schema.STATE_PREFIX)
    return {key[start:]: value for key, value in chain.store.iterate(schema.STATE_PREFIX)}


# ---- random blocks --------------------------------------------------------------------------

who = st.integers(0, len(KEYS) - 1)
action = st.one_of(
    st.tuples(st.just("transfer"), who, who, st.integers(1, 400)),
    st.tuples(st.just("stake"), who, st.integers(1, 400)),
    st.tuples(st.just("unstake"), who, st.integers(1, 300)),
    st.tuples(st.just("unjail"), who),
    st.tuples(st.just("equivocate"), who),
)
block_plan = st.tuples(st.lists(action, max_size=6), st.sets(who, max_size=len(KEYS)))


def submit(chain: Chain, step: tuple) -> None:
    """Submit one random action; the mempool or the forger may refuse it, as they would a user's."""
    kind, index = step[0], step[1]
    key = KEYS[index]
    nonce = chain.account(key.address).next_nonce
    try:
        if kind == "transfer":
            chain.submit(make_tx(key, nonce, "transfer", to=KEYS[step[2]].address, amount=step[3]))
        elif kind in ("stake", "unstake"):
            chain.submit(make_tx(key, nonce, kind, amount=step[2]))
        elif kind == "unjail":
            chain.submit(make_tx(key, nonce, "unjail"))
        else:
            height, seed = chain.height + 1, chain.next_seed
            chain.submit_evidence(make_evidence(make_proposal(key, nonce, height, seed, bpm=60),
                                                make_proposal(key, nonce, height, seed, bpm=61)))
    except LedgerError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(block_plan, min_size=1, max_size=8))
def test_random_blocks_reach_the_same_root_in_the_reference_and_the_working_state(plans):
    config = make_config(GENESIS_LIQUID, GENESIS_BONDS, **PARAMS)
    chain = Chain.initialise(MemoryStore(), config)
    reference = ReferenceState(config)
    assert reference.entries() == chain_entries(chain)
    assert reference.root() == chain.tip.state_root
    for actions, proposers in plans:
        for step in actions:
            submit(chain, step)
        for index in sorted(proposers):
            try:
                chain.submit(propose(chain, KEYS[index], bpm=70 + index))
            except LedgerError:
                pass
        before = chain.tip
        block = chain.forge(timestamp=before.timestamp + 1).block
        if block is None:
            assert chain.tip == before  # no eligible proposal: nothing changes
            continue
        for name in {type(tx).__name__ for tx in block.txs} | ({"evidence"} if block.evidence else set()):
            event(f"a block with {name}")  # --hypothesis-show-statistics: what the blocks held
        reference.apply(block)
        if any(record.jailed for record in reference.accounts.values()):
            event("a validator jailed")
        assert reference.entries() == chain_entries(chain), f"entries differ after block {block.height}"
        assert reference.root() == block.header.state_root == chain._muhash.digest()


def test_the_reference_sees_slashing_jailing_and_release_in_one_script():
    """A fixed script that reaches every branch of the reference, so the random test's agreement
    means something even if Hypothesis never draws a slash or a jailing."""
    config = make_config(GENESIS_LIQUID, GENESIS_BONDS, **PARAMS)
    chain = Chain.initialise(MemoryStore(), config)
    reference = ReferenceState(config)
    v, w = KEYS[0], KEYS[1]
    chain.submit(make_tx(v, 0, "unstake", amount=50))
    chain.submit(make_tx(KEYS[2], 0, "stake", amount=200))
    chain.submit(make_tx(KEYS[3], 0, "transfer", to=KEYS[2].address, amount=5))
    kinds = set()
    for height in range(1, 12):
        if height == 3:
            submit(chain, ("equivocate", 0))
        for key in (w, KEYS[2]):
            chain.submit(propose(chain, key))
        block = chain.forge(timestamp=chain.tip.timestamp + 1).block
        assert block is not None
        kinds |= {type(tx).__name__ for tx in block.txs}
        if block.evidence:
            kinds.add("evidence")
        if not block.trace[0].proposed:
            kinds.add("missed")
        reference.apply(block)
        assert reference.entries() == chain_entries(chain)
        assert reference.root() == block.header.state_root
    assert {"Unstake", "Stake", "Transfer", "Bpm", "evidence"} <= kinds
    assert reference.get(v.address).tombstoned and reference.burned > 0
    assert reference.get(v.address).unbonding == [] or all(due > 11 for _, due in reference.get(v.address).unbonding)
