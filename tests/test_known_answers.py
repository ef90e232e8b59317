"""posctl's own known answers: an accidental consensus change fails here.

The values in ``tests/vectors/posctl_known_answers.json`` were produced by
``tests/vectors/generate_posctl_vectors.py`` (consensus format 2). This test rebuilds the same
fixed-key txs and the same scripted three-block chain and compares every value: tx ids of each
kind, genesis and block hashes, each seed and VRF output, each draw trace and state root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.vectors.generate_posctl_vectors import scripted_chain_record, tx_id_record

FROZEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "posctl_known_answers.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def rebuilt_chain() -> dict[str, Any]:
    return scripted_chain_record()


@pytest.mark.parametrize("kind", ["transfer", "stake", "unstake", "bpm", "unjail", "bpm_vrf_proof"])
def test_tx_ids_of_each_kind(kind: str) -> None:
    assert tx_id_record()[kind] == FROZEN["tx_ids"][kind]


def test_genesis_hash(rebuilt_chain: dict[str, Any]) -> None:
    assert rebuilt_chain["genesis_hash"] == FROZEN["chain"]["genesis_hash"]


@pytest.mark.parametrize("height", [0, 1, 2, 3])
@pytest.mark.parametrize("field", ["hash", "seed", "vrf_output", "validator", "state_root", "tx_ids",
                                   "evidence_ids", "lottery"])
def test_each_block(rebuilt_chain: dict[str, Any], height: int, field: str) -> None:
    assert rebuilt_chain["blocks"][height][field] == FROZEN["chain"]["blocks"][height][field]


def test_the_script_exercises_what_it_claims() -> None:
    """The frozen chain has a passed-over validator, a full draw and a slashing: a record of a
    chain that did none of this would freeze much less."""
    blocks = FROZEN["chain"]["blocks"]
    assert any(not entry["proposed"] for block in blocks for entry in block["lottery"]["trace"])
    assert blocks[3]["evidence_ids"] and FROZEN["chain"]["totals"]["burned"] > 0


def test_totals_and_next_seed(rebuilt_chain: dict[str, Any]) -> None:
    assert rebuilt_chain["totals"] == FROZEN["chain"]["totals"]
    assert rebuilt_chain["next_seed"] == FROZEN["chain"]["next_seed"]
