"""BIP-32: the published vectors 1-5, CKDpub/CKDpriv agreement, round trips and path errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet import accounts, hd
from wallet.errors import DerivationError, InvalidExtendedKey
from wallet.hd import HARDENED, ExtendedKey

SHARED_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "bip32.json"
EXTRA_VECTORS = Path(__file__).resolve().parent / "vectors" / "bip32_extra.json"


def _load_valid() -> list[tuple[str, str, dict[str, str]]]:
    cases = []
    sources = [EXTRA_VECTORS]
    if SHARED_VECTORS.exists():
        sources.insert(0, SHARED_VECTORS)
    for source in sources:
        for number, vector in enumerate(json.loads(source.read_text())["vectors"]):
            for chain in vector["chains"]:
                cases.append((f"{source.stem}[{number}]", vector["seed"], chain))
    return cases


VALID = _load_valid()
INVALID = json.loads(EXTRA_VECTORS.read_text())["invalid"]

# Which rule each vector-5 case breaks, as the message must name it.
EXPECTED_RULE = {
    "pubkey version / prvkey mismatch": "xpub version but the key data is a private key",
    "prvkey version / pubkey mismatch": "xprv version but the key data is a public key",
    "invalid pubkey prefix 04": "public key must start with 0x02 or 0x03",
    "invalid prvkey prefix 04": "private key data must start with 0x00",
    "invalid pubkey prefix 01": "public key must start with 0x02 or 0x03",
    "invalid prvkey prefix 01": "private key data must start with 0x00",
    "zero depth with non-zero parent fingerprint": "zero parent fingerprint",
    "zero depth with non-zero index": "child number 0",
    "unknown extended key version": "unknown extended key version",
    "private key 0 not in 1..n-1": "outside the range 1..n-1",
    "private key n not in 1..n-1": "outside the range 1..n-1",
    "invalid checksum": "checksum",
}


def test_vectors_cover_one_to_four() -> None:
    seeds = {seed for _, seed, _ in VALID}
    assert len(seeds) == (4 if SHARED_VECTORS.exists() else 2)
    assert len(INVALID) == 16


@pytest.mark.parametrize(("source", "seed", "chain"), VALID, ids=lambda v: str(v)[:40])
def test_derivation_matches_vector(source: str, seed: str, chain: dict[str, str]) -> None:
    key = ExtendedKey.from_seed(bytes.fromhex(seed)).derive(chain["path"])
    assert key.to_string() == chain["xprv"]
    assert key.neuter().to_string() == chain["xpub"]


@pytest.mark.parametrize(("source", "seed", "chain"), VALID, ids=lambda v: str(v)[:40])
def test_vector_strings_round_trip(source: str, seed: str, chain: dict[str, str]) -> None:
    private = ExtendedKey.from_string(chain["xprv"])
    public = ExtendedKey.from_string(chain["xpub"])
    assert private.to_string() == chain["xprv"]
    assert public.to_string() == chain["xpub"]
    assert private.neuter() == public
    assert public.private_key is None
    assert private.private_key is not None and len(private.private_key) == 32
    assert private.public_key == public.public_key
    assert len(public.public_key) == 33 and public.public_key[0] in (2, 3)
    assert private.depth == public.depth == len(hd.parse_path(chain["path"]))


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["reason"])
def test_invalid_extended_keys_are_refused_naming_the_rule(case: dict[str, str]) -> None:
    with pytest.raises(InvalidExtendedKey) as caught:
        ExtendedKey.from_string(case["key"])
    expected = EXPECTED_RULE.get(case["reason"], "not a point on secp256k1")
    assert expected in str(caught.value)


def test_leading_zero_private_key_is_kept() -> None:
    """Vector 3's m and vector 4's m/0' have private keys starting with a zero byte.

    Dropping that byte before a hardened step (the bitcore and btcutil bugs) changes the child.
    """
    master3 = ExtendedKey.from_seed(
        bytes.fromhex(
            "4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4ac"
            "ba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be"
        )
    )
    key4 = ExtendedKey.from_seed(
        bytes.fromhex("3ddd5602285899a946114506157c7997e5444528f3003f6134712147db19b678")
    ).derive("m/0'")
    for key in (master3, key4):
        assert key.private_key is not None
        assert len(key.private_key) == 32 and key.private_key[0] == 0


def test_vector1_metadata() -> None:
    master = ExtendedKey.from_seed(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    assert master.fingerprint.hex() == "3442193e"
    assert master.chain_code.hex() == (
        "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508"
    )
    child = master.derive("m/0H/1")
    assert child.depth == 2
    assert child.child_number == 1
    assert child.parent_fingerprint == master.child(HARDENED).fingerprint


@pytest.mark.parametrize("path", ["m/0'/1/2'", "m/0h/1/2h", "m/0H/1/2H"])
def test_hardened_markers_are_equivalent(path: str) -> None:
    master = ExtendedKey.from_seed(bytes(range(16)))
    assert master.derive(path) == master.derive("m/0'/1/2'")


def test_relative_path_from_any_key() -> None:
    master = ExtendedKey.from_seed(bytes(range(16)))
    account = master.derive("m/44'/1'/0'")
    assert account.derive("0/7") == master.derive("m/44'/1'/0'/0/7")
    assert account.neuter().derive("0/7") == master.derive("m/44'/1'/0'/0/7").neuter()
    assert master.derive("m") == master
    assert master.derive("5") == master.child(5)


@st.composite
def _paths(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """A private prefix (any steps) and a public suffix (normal steps only)."""
    index = st.integers(min_value=0, max_value=HARDENED - 1)
    prefix = draw(
        st.lists(st.tuples(index, st.booleans()), max_size=3).map(
            lambda steps: [i + HARDENED if hardened else i for i, hardened in steps]
        )
    )
    suffix = draw(st.lists(index, min_size=1, max_size=3))
    return prefix, suffix


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=16, max_size=64), paths=_paths())
def test_ckdpub_of_neuter_equals_neuter_of_ckdpriv(
    seed: bytes, paths: tuple[list[int], list[int]]
) -> None:
    prefix, suffix = paths
    node = ExtendedKey.from_seed(seed)
    for index in prefix:
        node = node.child(index)
    via_private = node
    via_public = node.neuter()
    for index in suffix:
        via_private = via_private.child(index)
        via_public = via_public.child(index)
    assert via_private.neuter() == via_public
    assert via_public.to_string().startswith("xpub")
    assert ExtendedKey.from_string(via_public.to_string()) == via_public
    assert ExtendedKey.from_string(via_private.to_string()) == via_private


def test_hardened_step_from_public_key_is_refused() -> None:
    public = ExtendedKey.from_seed(bytes(range(16))).neuter()
    with pytest.raises(DerivationError, match="hardened"):
        public.child(HARDENED)
    with pytest.raises(DerivationError, match="hardened"):
        public.derive("0/1'")


@pytest.mark.parametrize(
    "path",
    ["", "m/", "m//1", "m/x", "m/1/-2", "m/1''", "m/2147483648", "m/1 /2", "n/1", "m/0x10", "/1"],
)
def test_bad_paths_are_refused(path: str) -> None:
    master = ExtendedKey.from_seed(bytes(range(16)))
    with pytest.raises(DerivationError):
        master.derive(path)


def test_absolute_path_needs_a_master_key() -> None:
    child = ExtendedKey.from_seed(bytes(range(16))).child(1)
    with pytest.raises(DerivationError, match="not a master key"):
        child.derive("m/0")


@pytest.mark.parametrize("index", [-1, 2**32, True, 1.5])
def test_bad_child_index_is_refused(index: object) -> None:
    with pytest.raises(DerivationError):
        ExtendedKey.from_seed(bytes(range(16))).child(index)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [15, 65])
def test_seed_length_is_checked(size: int) -> None:
    with pytest.raises(DerivationError):
        ExtendedKey.from_seed(b"\x01" * size)


def test_invalid_child_moves_on_to_next_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """I_L >= n happens with probability < 2^-127, so force it once through the HMAC hook."""
    master = ExtendedKey.from_seed(bytes(range(16)))
    expected_next = master.child(8)
    real_hmac = hd._hmac_sha512
    calls: list[bytes] = []

    def first_call_overflows(key: bytes, data: bytes) -> bytes:
        calls.append(data)
        if len(calls) == 1:
            return hd.CURVE_ORDER.to_bytes(32, "big") + b"\0" * 32
        return real_hmac(key, data)

    monkeypatch.setattr(hd, "_hmac_sha512", first_call_overflows)
    for node in (master, master.neuter()):
        calls.clear()
        child = node.child(7)
        assert child.child_number == 8
        assert child.neuter() == expected_next.neuter()


def test_corrupted_and_malformed_strings() -> None:
    good = ExtendedKey.from_seed(bytes(range(16))).to_string()
    for bad in [good[:-1], good + "1", good.replace(good[10], "0"), "", "xpub", 5]:
        with pytest.raises(InvalidExtendedKey):
            ExtendedKey.from_string(bad)  # type: ignore[arg-type]


def test_repr_never_shows_the_private_key() -> None:
    key = ExtendedKey.from_seed(bytes(range(16)))
    assert key.private_key is not None
    text = repr(key)
    assert key.private_key.hex() not in text
    assert key.to_string() not in text
    assert "private" in text


def test_base58_keeps_leading_zero_bytes() -> None:
    for data in [b"", b"\0", b"\0\0\1", b"\0" * 5 + b"\xff" * 3, bytes(range(40))]:
        assert hd.base58_decode(hd.base58_encode(data)) == data


def test_account_helpers_use_bip44_testnet_path() -> None:
    master = ExtendedKey.from_seed(bytes(range(32)))
    xpub = accounts.account_xpub(master, 2)
    assert xpub == master.derive("m/44'/1'/2'").neuter().to_string()
    leaf = master.derive("m/44'/1'/2'/0/5")
    assert accounts.public_key_from_account_xpub(xpub, 5) == leaf.public_key
    assert accounts.account_xpubs(master, range(3))[2] == xpub
    with pytest.raises(DerivationError):
        accounts.account_xpub(master, -1)
    with pytest.raises(DerivationError):
        accounts.public_key_from_account_xpub(xpub, HARDENED)
