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


@pytest.mark.parametrize("document", [{"params": 5}, {"chain_id": 7}, {"params": [1, 2]}, {"bonds": "x"}])
def test_malformed_genesis_documents_raise_ledger_errors(document):
    from ledger.errors import LedgerError

    with pytest.raises(LedgerError):
        GenesisConfig.from_dict(document)
