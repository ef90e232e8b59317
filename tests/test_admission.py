"""The admission pipeline on a real chain: small groups checked in the collector thread, large
ones on the worker processes, and either way each tx gets its own verdict, in order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ledger.chain import admission
from ledger.chain.admission import AdmissionPipeline
from ledger.errors import InvalidSignature, NonceMismatch
from tests.ledgerkit import make_chain, make_key, make_tx

ALICE, BOB, VALIDATOR = make_key("admission-alice"), make_key("admission-bob"), make_key("admission-validator")


@pytest.mark.parametrize("size", [5, 120])
def test_each_tx_of_a_group_gets_its_own_verdict_inline_or_on_the_workers(tmp_path: Path, monkeypatch, size: int) -> None:
    chain = make_chain(tmp_path / "home", {ALICE.address: 10**9, BOB.address: 10**9}, {VALIDATOR.address: 1000})
    pipeline = AdmissionPipeline(chain.submit_many, workers=2)
    try:
        pipeline.warm_up()
        # whatever the engine, 5 signatures are checked in the collector thread and 120 are sent
        monkeypatch.setitem(admission.INLINE_BELOW, pipeline.engine, 50)
        sent: list[int] = []
        send = pipeline._check
        monkeypatch.setattr(pipeline, "_check", lambda chunk: sent.append(len(chunk)) or send(chunk))
        txs = [make_tx(ALICE, nonce, "transfer", to=BOB.address, amount=1) for nonce in range(size)]
        bad = size // 2  # a valid signature of another tx: it must be refused, and only it
        txs[bad] = dataclasses.replace(txs[bad], signature=txs[bad - 1].signature)
        results = pipeline.admit(txs)
        assert sum(sent) == (0 if size < 50 else size) and pipeline._pool is not None  # not fallen back
        assert [r.error is None for r in results[:bad]] == [True] * bad
        assert isinstance(results[bad].error, InvalidSignature)
        assert all(isinstance(r.error, NonceMismatch) for r in results[bad + 1:])  # the gap it leaves
        assert chain.status().mempool == bad
    finally:
        pipeline.close()
        chain.close()
