"""A throwaway posctl chain in memory, driven only through posctl's own consensus code.

The defended side of every lab scenario runs here. Nothing in this module decides a rule:

* blocks are assembled by the real forger, :func:`ledger.chain.forger.build_block` (the
  lottery's ``pick_validator``, ``apply_tx``, ``record_liveness``, ``apply_evidence``…);
* a block joins the chain only after :func:`ledger.consensus.fork.state_transition` has
  re-checked it from scratch against the parent state — every signature, every VRF proof, the
  seed, the draw trace, the winner, the evidence and the state root — exactly as ``chain verify``
  replays a stored chain;
* transactions are signed with :func:`ledger.consensus.transactions.sign_transaction` and
  proposals carry a real ECVRF proof (:func:`ledger.crypto.ecvrf.prove`).

The state lives in a :class:`ledger.consensus.state.DictState`, the in-memory store ``verify``
replays into, so a run touches no disk and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from ledger.chain.forger import Candidate, build_block
from ledger.consensus import lottery, state
from ledger.consensus.blocks import Block, BlockHeader
from ledger.consensus.evidence import Evidence
from ledger.consensus.fork import next_seed, state_transition
from ledger.consensus.genesis import GenesisConfig, build_genesis
from ledger.consensus.state import Account, DictState, WorkingState
from ledger.consensus.transactions import Bpm, Transaction, TxId, make_transaction, sign_transaction
from ledger.crypto import ecvrf, secp256k1
from ledger.crypto.address import Address, address_from_public_key
from ledger.params import Params

GENESIS_TIMESTAMP = 1_700_000_000
"""A fixed clock: block h is stamped GENESIS_TIMESTAMP + h unless a scenario chooses otherwise."""

LAB_BPM = 72
"""The heart rate every lab proposal reports (the tutorial's payload; it plays no part in the draw)."""

KEY_TAG = b"posctl-lab-key:"


class LabError(Exception):
    """A lab run that cannot go on (a block that could not be forged); a bug, not a user error."""


@dataclass(frozen=True)
class LabKey:
    """A named participant of a lab run: its key pair and address."""

    label: str
    private: bytes
    public: bytes
    address: Address


def derive_key(seed: int, label: str) -> LabKey:
    """The key of ``label`` in the run with ``seed``: reproducible, and different per seed."""
    counter = 0
    while True:
        private = hashlib.sha256(KEY_TAG + f"{seed}:{label}:{counter}".encode()).digest()
        if 1 <= int.from_bytes(private, "big") < secp256k1.SECP256K1_ORDER:
            break
        counter += 1  # pragma: no cover - probability about 2^-128
    public = secp256k1.public_key_from_private(private)
    return LabKey(label, private, public, address_from_public_key(public))


class LabChain:
    """One in-memory posctl chain: genesis, then blocks that passed ``state_transition``."""

    def __init__(self, config: GenesisConfig) -> None:
        block, genesis_state, muhash = build_genesis(config)
        self.config = config
        self.params: Params = config.params
        self.state = DictState(genesis_state.entries)
        self.muhash = muhash
        self.tip: BlockHeader = block.header
        self.blocks: list[Block] = [block]
        self.signed: set[TxId] = set()
        """Ids of txs this harness signed itself: the forger trusts them, as a node trusts what
        its mempool admitted; ``state_transition`` still checks every one of them."""
        self._queued: dict[Address, int] = {}

    # ---- reading -----------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.tip.height

    @property
    def next_seed(self) -> bytes:
        """The seed of the next block, fixed by the tip (``ledger.consensus.fork.next_seed``)."""
        return next_seed(self.tip)

    def view(self) -> WorkingState:
        """A fresh read view of the committed state."""
        return WorkingState(self.state.get, self.state.items)

    def account(self, address: Address) -> Account:
        return state.get_account(self.view(), address)

    def eligible_weights(self) -> dict[Address, int]:
        """The draw's weights for the next block: ``state.get_eligible_weights`` of the tip state."""
        return state.get_eligible_weights(self.view(), self.params)

    def totals(self) -> state.Totals:
        return state.get_totals(self.view())

    def first_drawn(self) -> Address:
        """d1 of the next block's fixed order (``lottery.draw_order``)."""
        return next(lottery.draw_order(self.next_seed, self.eligible_weights()))

    # ---- signing -----------------------------------------------------------------------------

    def sign(self, key: LabKey, kind: str, *, chain_id: str | None = None, nonce: int | None = None,
             **fields: object) -> Transaction:
        """A tx of ``key`` at its next nonce (counting txs already signed for the next block)."""
        if nonce is None:
            nonce = self.account(key.address).nonce + self._queued.get(key.address, 0)
            self._queued[key.address] = self._queued.get(key.address, 0) + 1
        tx = make_transaction(kind, chain_id=chain_id or self.params.chain_id, public_key=key.public,
                              nonce=nonce, **fields)
        signed = sign_transaction(tx, key.private)
        self.signed.add(signed.tx_id)
        return signed

    def propose(self, key: LabKey, *, bpm: int = LAB_BPM, nonce: int | None = None) -> Bpm:
        """A proposal for the next block with its ECVRF proof over that height's seed."""
        height = self.height + 1
        proof = ecvrf.prove(key.private, lottery.vrf_alpha(self.params.chain_id, height, self.next_seed))
        tx = self.sign(key, "bpm", nonce=nonce, bpm=bpm, height=height, vrf_proof=proof)
        if not isinstance(tx, Bpm):
            raise LabError("make_transaction('bpm') did not build a Bpm")  # pragma: no cover
        return tx

    # ---- forging -----------------------------------------------------------------------------

    def build(self, txs: Sequence[Transaction], *, timestamp: int | None = None,
              evidence: Iterable[Evidence] = (), trust: Iterable[TxId] = ()) -> Candidate:
        """What the real forger makes of ``txs`` on the tip; nothing is committed.

        ``trust`` names foreign txs the forger should take without its admission checks, as a
        dishonest forger would: ``state_transition`` still judges the block in :meth:`commit`.
        """
        stamp = GENESIS_TIMESTAMP + self.height + 1 if timestamp is None else timestamp
        pending = list(enumerate(txs))
        items = [(item.evidence_id, item) for item in evidence]
        return build_block(self.state.get, self.state.items, self.tip, self.muhash, self.params, pending,
                           stamp, frozenset(self.signed) | frozenset(trust), items)

    def commit(self, block: Block) -> None:
        """Accept ``block`` only through ``state_transition``; it raises ``InvalidBlock`` otherwise."""
        writes, muhash = state_transition(self.state.get, self.state.items, self.muhash, block, self.tip,
                                          self.params)
        self.state.apply(writes)
        self.muhash = muhash
        self.tip = block.header
        self.blocks.append(block)
        self._queued.clear()

    def forge(self, txs: Sequence[Transaction], *, timestamp: int | None = None,
              evidence: Iterable[Evidence] = (), trust: Iterable[TxId] = ()) -> Candidate:
        """Build and commit the next block; a run that cannot forge is a bug in the scenario."""
        candidate = self.build(txs, timestamp=timestamp, evidence=evidence, trust=trust)
        if candidate.block is None:
            raise LabError(f"no block at height {self.height + 1}: {candidate.reason}")
        self.commit(candidate.block)
        return candidate


LAB_CHAIN_ID = "posctl-lab"
LAB_MIN_STAKE = 10
"""The lab's chains take min_stake 10 (default 100) so small split stakes stay eligible."""


def lab_chain(
    seed: int,
    bonds: Mapping[str, int],
    allocations: Mapping[str, int] | None = None,
    *,
    chain_id: str = LAB_CHAIN_ID,
    **params: int,
) -> tuple[LabChain, dict[str, LabKey]]:
    """A fresh chain whose participants are named by label; keys derived from ``seed``."""
    labels = sorted(set(bonds) | set(allocations or {}))
    keys = {label: derive_key(seed, label) for label in labels}
    settings = {"min_stake": LAB_MIN_STAKE, **params}
    config = GenesisConfig(
        params=Params(chain_id=chain_id, **settings),
        allocations={keys[label].address: amount for label, amount in (allocations or {}).items()},
        bonds={keys[label].address: amount for label, amount in bonds.items()},
        timestamp=GENESIS_TIMESTAMP,
    )
    return LabChain(config), keys
