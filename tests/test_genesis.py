import pytest

from ledger.consensus.genesis import GenesisConfig, build_genesis
from ledger.errors import InvalidGenesis, InvalidParams
from ledger.params import Params
from tests.ledgerkit import make_key

A, V = make_key("a"), make_key("v")


def test_genesis_needs_a_validator_with_min_stake():
    with pytest.raises(InvalidGenesis, match="at least one validator bonded with min_stake"):
        GenesisConfig(allocations={A.address: 100})
    with pytest.raises(InvalidGenesis, match="min_stake"):
        GenesisConfig(params=Params(min_stake=1000), bonds={V.address: 999})


@pytest.mark.parametrize("amount", [0, -5, 2**63, "10"])
def test_genesis_amounts_are_whole_and_in_range(amount):
    with pytest.raises(InvalidGenesis, match=r"\[1, 2\^63\)"):
        GenesisConfig(allocations={A.address: amount}, bonds={V.address: 500})


def test_genesis_addresses_are_checked():
    with pytest.raises(InvalidGenesis, match="allocation"):
        GenesisConfig(allocations={A.address[:-1] + "x": 5}, bonds={V.address: 500})


def test_genesis_round_trips_and_commits_to_its_configuration():
    config = GenesisConfig(allocations={A.address: 7}, bonds={V.address: 500}, timestamp=5)
    assert GenesisConfig.decode(config.encode()) == config
    block, state, _ = build_genesis(config)
    other, _, _ = build_genesis(GenesisConfig(allocations={A.address: 8}, bonds={V.address: 500}, timestamp=5))
    assert block.hash != other.hash and block.header.state_root != other.header.state_root
    assert block.height == 0 and block.header.validator == ""


def test_params_are_validated():
    with pytest.raises(InvalidParams, match="chain id"):
        Params(chain_id="Has Spaces")
    with pytest.raises(InvalidParams, match="bpm_min"):
        Params(bpm_min=100, bpm_max=50)
    with pytest.raises(InvalidParams, match="unknown parameter 'speed'"):
        Params.from_dict({"speed": 3})
    with pytest.raises(InvalidParams, match="must be an integer"):
        Params(min_stake="100")  # type: ignore[arg-type]


def test_unbonding_needs_at_least_one_block():
    with pytest.raises(InvalidParams, match="unbonding_blocks must be at least 1"):
        Params(unbonding_blocks=0)


@pytest.mark.parametrize("chain_id, bpm_max", [("posctl-test", 250), ("a" * 48, 2**63 - 1)])
def test_max_tx_bytes_must_let_every_proposal_through(chain_id, bpm_max):
    """`--param max_tx_bytes=10` made a chain on which every tx, proposals included, was refused:
    no block could ever be forged. The bound is the largest proposal that chain can carry, and
    a real one signed with every number at its largest is exactly that size."""
    from ledger.consensus.transactions import largest_proposal_size
    from ledger.params import MAX_AMOUNT
    from tests.ledgerkit import make_proposal

    params = Params(chain_id=chain_id, bpm_max=bpm_max)
    largest = largest_proposal_size(params)
    real = make_proposal(V, MAX_AMOUNT - 1, MAX_AMOUNT - 1, bytes(32), bpm=bpm_max, chain_id=chain_id)
    assert len(real.encoded) == largest
    with pytest.raises(InvalidGenesis, match=f"max_tx_bytes {largest - 1} is below the size of a proposal on this "
                                             f"chain \\(up to {largest} bytes\\).*use at least {largest}"):
        GenesisConfig(params=Params(chain_id=chain_id, bpm_max=bpm_max, max_tx_bytes=largest - 1), bonds={V.address: 500})
    GenesisConfig(params=Params(chain_id=chain_id, bpm_max=bpm_max, max_tx_bytes=largest), bonds={V.address: 500})


def test_block_reward_is_bounded_so_no_balance_can_overflow():
    """A reward near 2^63 was accepted: block 1 paid it, and every block after was refused
    ("balance would reach 2^63"), the chain stopped."""
    from ledger.params import MAX_AMOUNT, MAX_BLOCK_REWARD

    assert MAX_BLOCK_REWARD * 10**9 < MAX_AMOUNT
    Params(block_reward=MAX_BLOCK_REWARD)
    with pytest.raises(InvalidParams, match=f"block_reward={MAX_BLOCK_REWARD + 1} is above {MAX_BLOCK_REWARD}"):
        Params(block_reward=MAX_BLOCK_REWARD + 1)


@pytest.mark.parametrize("document, error, message", [
    ({"params": 5}, "InvalidGenesis", "genesis field 'params' must be an object"),
    ({"chain_id": 7}, "InvalidParams", "chain id 7 is not valid"),
    ({"params": [1, 2]}, "InvalidGenesis", "genesis field 'params' must be an object"),
    ({"bonds": "x"}, "InvalidGenesis", "genesis field 'bonds' must map addresses to amounts"),
])
def test_malformed_genesis_documents_raise_the_specific_error(document, error, message):
    from ledger import errors

    with pytest.raises(getattr(errors, error), match=message) as info:
        GenesisConfig.from_dict(document)
    assert type(info.value).__name__ == error


# ---- genesis as people give it: file + options, merged by the ledger ---------------------------

from ledger.chain.genesis_file import scan_genesis_file  # noqa: E402
from ledger.chain.genesis_input import merge_genesis  # noqa: E402


def _by_name(who: str) -> str:
    return {"alice": A.address, "val": V.address}.get(who, who)


def test_options_win_over_the_file_and_names_resolve():
    base = {"params": {"min_stake": 5, "chain_id": "from-file"}, "allocations": {"alice": 10}, "timestamp": 7}
    config = merge_genesis(
        base, resolve=_by_name, chain_id="posctl-opt", params={"min_stake": 9}, bonds=[("val", 20)]
    )
    assert config.params.chain_id == "posctl-opt" and config.params.min_stake == 9
    assert dict(config.allocations) == {A.address: 10} and dict(config.bonds) == {V.address: 20}
    assert config.timestamp == 7


def test_a_new_chain_gets_a_fresh_chain_id_and_the_time_given():
    first = merge_genesis({}, resolve=_by_name, bonds=[("val", 100)], now=1_700_000_000)
    second = merge_genesis({}, resolve=_by_name, bonds=[("val", 100)], now=1_700_000_000)
    assert first.params.chain_id.startswith("posctl-") and first.params.chain_id != second.params.chain_id
    assert first.timestamp == 1_700_000_000


def test_one_account_under_two_names_is_refused():
    with pytest.raises(InvalidGenesis, match="val is given twice .also as " + V.address):
        merge_genesis({"bonds": {V.address: 100}}, resolve=_by_name, bonds=[("val", 100)])


@pytest.mark.parametrize("base, fragment", [
    ({"params": []}, "'params' must be an object"),
    ({"allocations": [1]}, "'allocations' must map"),
    ({"bonds": {"val": "100"}}, "not a whole number"),
])
def test_malformed_genesis_input_is_invalid_genesis(base, fragment):
    with pytest.raises(InvalidGenesis, match=fragment):
        merge_genesis(base, resolve=_by_name, bonds=[])


def test_genesis_file_with_a_duplicate_key_is_refused(tmp_path):
    path = tmp_path / "genesis.json"
    path.write_text('{"bonds": {"a": 1, "a": 2}}')
    with pytest.raises(InvalidGenesis, match="ambiguous: duplicate field 'a'"):
        scan_genesis_file(path)
    path.write_text("[]")
    with pytest.raises(InvalidGenesis, match="must hold a JSON object"):
        scan_genesis_file(path)
