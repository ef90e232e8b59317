import dataclasses

import pytest

from ledger import encoding
from ledger.crypto import secp256k1
from ledger.errors import EncodingError, InvalidSignature, InvalidTransaction, WrongChain
from ledger.params import Params
from ledger.consensus.transactions import Transaction, check_stateless, make_transaction, validate_transaction, verify_signature
from tests.ledgerkit import make_key, make_proposal, make_tx

SEED = bytes(range(32))
"""A fixed seed for proposals checked without a chain."""

PARAMS = Params(chain_id="posctl-test")
ALICE = make_key("alice")
BOB = make_key("bob")


def test_round_trip_of_every_kind():
    for tx in [
        make_tx(ALICE, 0, "transfer", to=BOB.address, amount=5),
        make_tx(ALICE, 1, "stake", amount=100),
        make_tx(ALICE, 2, "unstake", amount=1),
        make_proposal(ALICE, 3, 1, SEED, 72),
        make_tx(ALICE, 4, "unjail"),
    ]:
        data = tx.encode()
        again = Transaction.decode(data)
        assert again == tx and again.encode() == data and again.tx_id == tx.tx_id
        validate_transaction(again, PARAMS)


def test_id_does_not_depend_on_signature_and_signature_covers_every_field():
    tx = make_tx(ALICE, 0, "transfer", to=BOB.address, amount=5)
    assert dataclasses.replace(tx, signature=b"\x01" * 64).tx_id == tx.tx_id
    for change in [{"amount": 6}, {"nonce": 1}, {"to": ALICE.address}, {"chain_id": "other"}]:
        with pytest.raises(InvalidSignature):
            verify_signature(dataclasses.replace(tx, **change))


def test_high_s_variant_is_rejected():
    tx = make_tx(ALICE, 0, "stake", amount=10)
    s = int.from_bytes(tx.signature[32:], "big")
    high = tx.signature[:32] + (secp256k1.SECP256K1_ORDER - s).to_bytes(32, "big")
    with pytest.raises(InvalidSignature, match="low-S"):
        verify_signature(dataclasses.replace(tx, signature=high))


@pytest.mark.parametrize("amount", [0, -1, 2**63, True])
def test_amount_out_of_range(amount):
    tx = make_tx(ALICE, 0, "stake", amount=1)
    with pytest.raises(InvalidTransaction, match="amount"):
        check_stateless(dataclasses.replace(tx, amount=amount), PARAMS)


@pytest.mark.parametrize("bpm", [19, 251, -5])
def test_bpm_out_of_range(bpm):
    with pytest.raises(InvalidTransaction, match="bpm .* out of range: this chain accepts 20 to 250"):
        check_stateless(make_proposal(ALICE, 0, 1, SEED, bpm), PARAMS)


def test_wrong_chain_and_bad_recipient():
    with pytest.raises(WrongChain, match="'elsewhere'"):
        check_stateless(make_proposal(ALICE, 0, 1, SEED, 70, chain_id="elsewhere"), PARAMS)
    with pytest.raises(InvalidTransaction, match="recipient"):
        check_stateless(make_tx(ALICE, 0, "transfer", to=BOB.address[:-1] + "x", amount=1), PARAMS)
    with pytest.raises(InvalidTransaction, match="lowercase"):
        check_stateless(make_tx(ALICE, 0, "transfer", to=BOB.address.upper(), amount=1), PARAMS)


def test_oversized_tx_is_refused():
    small = Params(chain_id="posctl-test", max_tx_bytes=200)
    with pytest.raises(InvalidTransaction, match="above the limit of 200"):
        check_stateless(make_proposal(ALICE, 0, 1, SEED, 70), small)


def obj_of(tx: Transaction) -> dict:
    return encoding.decode(tx.encode())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda o: o.pop("nonce"), "missing field 'nonce'"),
        (lambda o: o.update(extra=1), "unknown field 'extra'"),
        (lambda o: o.update(kind="mint"), "field 'kind' must be one of"),
        (lambda o: o.update(public_key="zz"), "'public_key' is not valid hex"),
        (lambda o: o.update(signature="00"), "'signature' must be 64 bytes"),
        (lambda o: o.update(amount="5"), "'amount' must be an integer"),
    ],
)
def test_decoding_names_the_bad_field(mutate, message):
    obj = obj_of(make_tx(ALICE, 0, "stake", amount=5))
    mutate(obj)
    with pytest.raises(EncodingError, match=message):
        Transaction.from_dict(obj)


def test_decoding_rejects_booleans_floats_and_duplicates():
    raw = make_tx(ALICE, 0, "stake", amount=5).encode()
    with pytest.raises(EncodingError):
        Transaction.decode(raw.replace(b'"amount":5', b'"amount":true'))
    with pytest.raises(EncodingError):
        Transaction.decode(raw.replace(b'"amount":5', b'"amount":5.0'))
    with pytest.raises(EncodingError, match="duplicate"):
        Transaction.decode(raw.replace(b'"amount":5', b'"amount":5,"amount":5'))
    with pytest.raises(EncodingError, match="far above"):
        Transaction.decode(b" " * 70000)


from hypothesis import given, strategies as st  # noqa: E402


@given(
    kind=st.sampled_from(["transfer", "stake", "unstake", "bpm", "unjail"]),
    nonce=st.integers(0, 2**63 - 1),
    amount=st.integers(1, 2**63 - 1),
    bpm=st.integers(-5, 300),
    chain_id=st.text(alphabet='abc-"\\,:é', min_size=1, max_size=12),
)
def test_decoded_txs_sign_the_same_bytes_as_freshly_built_ones(kind, nonce, amount, bpm, chain_id):
    """Decoding takes the signed body from the received bytes; it must equal encoding it anew,
    whatever the strings hold (quotes, commas, escapes)."""
    fields = {"transfer": {"to": BOB.address, "amount": amount}, "stake": {"amount": amount},
              "unstake": {"amount": amount}, "bpm": {"bpm": bpm, "height": nonce + 1, "vrf_proof": bytes(81)},
              "unjail": {}}[kind]
    built = make_transaction(kind, chain_id=chain_id, public_key=ALICE.public, nonce=nonce,
                             signature=bytes(range(64)), **fields)
    decoded = Transaction.decode(built.encode())
    assert type(decoded) is type(built)
    rebuilt = make_transaction(
        decoded.kind, chain_id=decoded.chain_id, public_key=decoded.public_key, nonce=decoded.nonce,
        signature=decoded.signature, **{name: getattr(decoded, name) for name in decoded.FIELDS},
    )
    assert "_signing_message" in decoded.__dict__  # the shortcut was taken
    assert decoded.signing_message() == rebuilt.signing_message()
    assert decoded.tx_id == built.tx_id


def _decoded_or_error(decode) -> tuple:
    """(encoded bytes, signing message, tx id) of what ``decode()`` returns, or its error."""
    try:
        tx = decode()
    except EncodingError as exc:
        return ("refused", str(exc))
    return (tx.encoded, tx.signing_message(), tx.tx_id)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: None,
        lambda o: o.update(amount=True),
        lambda o: o.update(amount=5.0),
        lambda o: o.update(amount=None),
        lambda o: o.pop("nonce"),
        lambda o: o.update(extra=[1, {"x": 2}]),
        lambda o: o.update(chain_id='quote " comma , "signature":"'),
        lambda o: o.update(public_key="zz"),
        lambda o: o.update(to="X" * 70000),
    ],
)
def test_a_batch_item_decodes_as_its_canonical_bytes_would(mutate):
    """``from_json_value`` (each item of a ``POST /txs`` array, parsed once with the array) gives
    exactly what decoding the item's canonical bytes gives: the same tx, bytes and id, or the
    same refusal."""
    obj = obj_of(make_tx(ALICE, 3, "transfer", to=BOB.address, amount=5))
    mutate(obj)
    via_value = _decoded_or_error(lambda: Transaction.from_json_value(obj))
    try:
        raw = encoding.encode(obj)
    except EncodingError as exc:
        via_bytes: tuple = ("refused", str(exc))
    else:
        via_bytes = _decoded_or_error(lambda: Transaction.decode(raw))
    assert via_value == via_bytes
