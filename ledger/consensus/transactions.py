"""Transactions: what a sender signs, its id, and the checks that need no state.

Five kinds, as in the tutorial's story made real: ``transfer`` moves liquid tokens, ``stake``
bonds them as collateral, ``unstake`` starts their unbonding lock-up, ``bpm`` is a validator's
heart-rate reading for one height with its VRF proof, which is also its entry into that block's
lottery, and ``unjail`` brings a validator jailed for missed turns back into the draw.

The id is a tagged SHA-256 over the canonical *unsigned* body, so no one can change an id by
re-encoding the signature; the signature is over the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from ledger import encoding
from ledger.errors import InvalidKey
from ledger.crypto.address import address_from_public_key, parse_address
from ledger.crypto import secp256k1
from ledger.crypto.address import Address
from ledger.errors import (
    EncodingError,
    InvalidAddress,
    InvalidTransaction,
    WrongChain,
)
from ledger.params import MAX_AMOUNT, Params

TX_TAG = "posctl/tx"
"""Domain tag of tx ids and tx signatures."""

TRANSFER, STAKE, UNSTAKE, BPM, UNJAIL = "transfer", "stake", "unstake", "bpm", "unjail"

VRF_PROOF_SIZE = 81
"""An ECVRF proof: Gamma (33), c (16), s (32)."""

COMMON_FIELDS = ("chain_id", "kind", "nonce", "public_key")
"""Members every kind's body has (``signature`` is added to the signed form)."""

DECODE_LIMIT = 65536
"""Bytes refused before parsing at all; the chain's own, smaller limit is ``max_tx_bytes``."""

TxId = bytes


@dataclass(frozen=True, kw_only=True)
class Transaction:
    """What every kind shares; a transaction is always one of the subclasses below.

    Signed or not (``signature == b""``). A kind's own fields are its dataclass fields after the
    common ones, and ``FIELDS`` lists them in body order, so no kind carries another's fields.
    """

    KIND: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[str, ...]] = ()

    chain_id: str
    public_key: bytes
    nonce: int
    signature: bytes = b""

    @property
    def kind(self) -> str:
        return self.KIND

    def body(self) -> dict[str, Any]:
        """The canonical unsigned body: what the id and the signature cover."""
        out: dict[str, Any] = {
            "chain_id": self.chain_id,
            "kind": self.KIND,
            "nonce": self.nonce,
            "public_key": self.public_key.hex(),
        }
        for name in self.FIELDS:
            value = getattr(self, name)
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        out = self.body()
        out["signature"] = self.signature.hex()
        return out

    @functools.cached_property
    def encoded(self) -> bytes:
        """The canonical signed bytes, computed once (the size rule reads them per check)."""
        return encoding.encode(self.to_dict())

    def encode(self) -> bytes:
        return self.encoded

    @functools.cached_property
    def _signing_message(self) -> bytes:
        return encoding.tagged_preimage(TX_TAG, encoding.encode(self.body()))

    def signing_message(self) -> bytes:
        """The bytes signed; SHA-256 of them is the tx id. Computed once per tx."""
        return self._signing_message

    @functools.cached_property
    def tx_id(self) -> TxId:
        return encoding.sha256(self._signing_message)

    @property
    def id_hex(self) -> str:
        return self.tx_id.hex()

    @functools.cached_property
    def sender(self) -> Address:
        return address_from_public_key(self.public_key)

    @classmethod
    def from_dict(cls, obj: Any) -> "Transaction":
        """Build the kind named by ``obj['kind']``, naming the first field that is wrong."""
        if not isinstance(obj, dict):
            raise EncodingError("a transaction must be a JSON object")
        kind = obj.get("kind")
        tx_class = TX_CLASSES.get(kind) if isinstance(kind, str) else None
        if tx_class is None:
            raise EncodingError(f"field 'kind' must be one of {', '.join(TX_CLASSES)}, got {kind!r}")
        fields = set(COMMON_FIELDS) | set(tx_class.FIELDS) | {"signature"}
        encoding.require_fields(obj, fields, f"{kind} transaction")
        values: dict[str, Any] = {
            "chain_id": encoding.require_str(obj["chain_id"], "chain_id"),
            "public_key": encoding.hex_to_bytes(obj["public_key"], "public_key", secp256k1.PUBLIC_KEY_SIZE),
            "nonce": encoding.require_int(obj["nonce"], "nonce"),
            "signature": encoding.hex_to_bytes(obj["signature"], "signature", secp256k1.SIGNATURE_SIZE),
        }
        for name in tx_class.FIELDS:
            values[name] = _FIELD_DECODERS[name](obj[name], name)
        return tx_class(**values)

    @classmethod
    def decode(cls, data: bytes) -> "Transaction":
        """Parse canonical bytes; refuses anything that would not re-encode identically."""
        if len(data) > DECODE_LIMIT:
            raise EncodingError(f"transaction is {len(data)} bytes, far above any limit")
        return cls._from_canonical(encoding.decode(data), bytes(data))

    @classmethod
    def from_json_value(cls, obj: Any) -> "Transaction":
        """A tx from an already parsed JSON value, such as one item of a batch: the same tx, and
        the same refusals, as :meth:`decode` of the value's canonical bytes, without parsing
        and re-encoding those bytes a second time."""
        raw = encoding.encode(obj)
        if len(raw) > DECODE_LIMIT:
            raise EncodingError(f"transaction is {len(raw)} bytes, far above any limit")
        return cls._from_canonical(obj, raw)

    @classmethod
    def _from_canonical(cls, obj: Any, raw: bytes) -> "Transaction":
        """``obj`` whose canonical encoding is ``raw`` (the caller has established it)."""
        tx = cls.from_dict(obj)
        tx.__dict__["encoded"] = raw  # the canonical bytes of obj, so of the tx
        # The signed body is those bytes without the signature member: keys are sorted, so
        # ``"signature"`` follows ``"public_key"`` after a comma, and a quote inside a string is
        # always escaped, so the first `,"signature":"` is that member. Saves encoding the body
        # again for every admitted tx (a test checks it against the long way).
        member = b',"signature":"' + tx.signature.hex().encode("ascii") + b'"'
        body = raw.replace(member, b"", 1)
        if len(body) == len(raw) - len(member):
            tx.__dict__["_signing_message"] = encoding.tagged_preimage(TX_TAG, body)
        return tx


@dataclass(frozen=True, kw_only=True)
class Transfer(Transaction):
    """Moves liquid tokens to another address."""

    KIND: ClassVar[str] = TRANSFER
    FIELDS: ClassVar[tuple[str, ...]] = ("to", "amount")

    to: Address
    amount: int


@dataclass(frozen=True, kw_only=True)
class Stake(Transaction):
    """Bonds liquid tokens as collateral: only bonded stake counts in the lottery."""

    KIND: ClassVar[str] = STAKE
    FIELDS: ClassVar[tuple[str, ...]] = ("amount",)

    amount: int


@dataclass(frozen=True, kw_only=True)
class Unstake(Transaction):
    """Starts unbonding: the tokens stay locked for ``unbonding_blocks`` before they are liquid."""

    KIND: ClassVar[str] = UNSTAKE
    FIELDS: ClassVar[tuple[str, ...]] = ("amount",)

    amount: int


@dataclass(frozen=True, kw_only=True)
class Bpm(Transaction):
    """A validator's heart-rate reading for block ``height``: the tutorial's payload, and its
    entry into that block's lottery. ``vrf_proof`` proves the VRF over the height's seed, so the
    proposal carries the output that will seed the next block if this validator wins."""

    KIND: ClassVar[str] = BPM
    FIELDS: ClassVar[tuple[str, ...]] = ("bpm", "height", "vrf_proof")

    bpm: int
    height: int
    vrf_proof: bytes


@dataclass(frozen=True, kw_only=True)
class Unjail(Transaction):
    """Ends a jailing for missed turns; a tombstoned validator can never unjail."""

    KIND: ClassVar[str] = UNJAIL
    FIELDS: ClassVar[tuple[str, ...]] = ()


AnyTransaction = Transfer | Stake | Unstake | Bpm | Unjail
"""Every kind there is: what ``match`` statements over a transaction cover."""

TX_CLASSES: dict[str, type[Transaction]] = {cls.KIND: cls for cls in (Transfer, Stake, Unstake, Bpm, Unjail)}
"""The class of each ``kind`` string, in the order error messages list them."""

_FIELD_DECODERS: dict[str, Callable[[Any, str], Any]] = {
    "to": encoding.require_str,
    "amount": encoding.require_int,
    "bpm": encoding.require_int,
    "height": encoding.require_int,
    "vrf_proof": lambda value, name: encoding.hex_to_bytes(value, name, VRF_PROOF_SIZE),
}
"""How each kind-specific member is read from its decoded JSON."""


def largest_proposal_size(params: Params) -> int:
    """The encoded size of the largest proposal a chain with ``params`` can carry (its chain id,
    every number at its largest; keys, proofs and signatures have fixed sizes). A ``max_tx_bytes``
    below it would refuse proposals, and with them every block."""
    return len(Bpm(
        chain_id=params.chain_id, public_key=bytes(secp256k1.PUBLIC_KEY_SIZE), nonce=MAX_AMOUNT - 1,
        signature=bytes(secp256k1.SIGNATURE_SIZE), bpm=params.bpm_max, height=MAX_AMOUNT - 1,
        vrf_proof=bytes(VRF_PROOF_SIZE),
    ).encoded)


def make_transaction(kind: str, **fields: Any) -> Transaction:
    """An unsigned tx of the kind named by ``kind``: for callers that hold the kind as a string."""
    tx_class = TX_CLASSES.get(kind)
    if tx_class is None:
        raise InvalidTransaction(f"unknown transaction kind {kind!r}: use one of {', '.join(TX_CLASSES)}")
    return tx_class(**fields)


def sign_transaction(tx: Transaction, private_key: bytes) -> Transaction:
    """Return ``tx`` signed by ``private_key``, which must match ``tx.public_key``."""
    if secp256k1.public_key_from_private(private_key) != tx.public_key:
        raise InvalidTransaction("the private key does not belong to the transaction's public key")
    signature = secp256k1.sign(private_key, tx.signing_message())
    return dataclasses.replace(tx, signature=signature)


def verify_signature(tx: Transaction) -> None:
    """Raise :class:`InvalidSignature` unless the sender's key signed exactly this body."""
    secp256k1.verify(tx.public_key, tx.signing_message(), tx.signature)


def check_amount(amount: Any, what: str = "amount") -> int:
    """Amounts are integers in [1, 2^63): no zero, negative, fractional or oversized value."""
    if type(amount) is not int:
        raise InvalidTransaction(f"{what} must be a whole number of tokens, got {amount!r}")
    if not 1 <= amount < MAX_AMOUNT:
        raise InvalidTransaction(f"{what} {amount} is out of range: use 1 to 2^63-1 tokens")
    return amount


def check_bpm(bpm: Any, params: Params) -> int:
    if type(bpm) is not int:
        raise InvalidTransaction(f"bpm must be an integer, got {bpm!r}")
    if not params.bpm_min <= bpm <= params.bpm_max:
        raise InvalidTransaction(
            f"bpm {bpm} is out of range: this chain accepts {params.bpm_min} to {params.bpm_max}"
        )
    return bpm


@functools.lru_cache(maxsize=65536)
def _check_recipient(to: str) -> None:
    """Cached: the same few recipients recur in every block, and bech32 is slow in Python."""
    try:
        canonical = parse_address(to)
    except InvalidAddress as exc:
        raise InvalidTransaction(f"recipient: {exc}") from None
    if canonical != to:
        raise InvalidTransaction("recipient address must be written in lowercase")


def check_stateless(tx: Transaction, params: Params) -> None:
    """Every rule that needs no state except the signature (see :func:`verify_signature`)."""
    if tx.chain_id != params.chain_id:
        raise WrongChain(
            f"transaction is for chain {tx.chain_id!r}, this chain is {params.chain_id!r}"
        )
    if type(tx.nonce) is not int or not 0 <= tx.nonce < MAX_AMOUNT:
        raise InvalidTransaction(f"nonce {tx.nonce!r} must be an integer in [0, 2^63)")
    try:
        secp256k1.validate_public_key(tx.public_key)
    except InvalidKey as exc:
        raise InvalidTransaction(str(exc)) from None
    match tx:
        case Transfer(to=to, amount=amount):
            check_amount(amount)
            _check_recipient(to)
        case Stake(amount=amount) | Unstake(amount=amount):
            check_amount(amount)
        case Bpm(bpm=bpm, height=height):
            check_bpm(bpm, params)
            if type(height) is not int or not 1 <= height < MAX_AMOUNT:
                raise InvalidTransaction(f"proposal height {height!r} must be an integer in [1, 2^63)")
        case Unjail():
            pass
        case _:
            raise InvalidTransaction(f"unknown transaction kind {tx.kind!r}")
    size = len(tx.encode())
    if size > params.max_tx_bytes:
        raise InvalidTransaction(f"transaction is {size} bytes, above the limit of {params.max_tx_bytes}")


def validate_transaction(tx: Transaction, params: Params) -> None:
    """Stateless checks plus the signature: what admission and replay both require."""
    check_stateless(tx, params)
    verify_signature(tx)
