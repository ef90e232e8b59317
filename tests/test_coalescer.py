"""The API's coalescer: every submission of one event-loop turn reaches the node as one call.

A fake node service records each ``admit`` call and answers from another thread, as the real
admission pipeline does, so these tests see exactly how submissions are merged and how the
answers are dealt back; ``tests/test_http.py`` drives the same path through a real node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any, Sequence

import pytest

from ledger.chain.mempool import Admission
from ledger.errors import InvalidTransaction, NodeUnavailable
from ledger.node.api import Coalescer


class FakeTx:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeService:
    """Admits every tx (its id is its name) unless its name starts with "bad"; answers from a thread."""

    def __init__(self, fail_with: BaseException | None = None, refuse_now: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail_with = fail_with
        self.refuse_now = refuse_now
        self.answered = False

    def admit(self, txs: Sequence[Any]) -> "concurrent.futures.Future[list[Admission]]":
        if self.refuse_now:
            raise NodeUnavailable("the node is not serving yet: retry in a moment")
        self.calls.append([tx.name for tx in txs])
        future: concurrent.futures.Future[list[Admission]] = concurrent.futures.Future()

        def answer() -> None:
            if self.fail_with is not None:
                future.set_exception(self.fail_with)
            else:
                future.set_result([Admission(None, InvalidTransaction(tx.name)) if tx.name.startswith("bad")
                                   else Admission(tx.name.encode()) for tx in txs])
            self.answered = True

        threading.Timer(0.01, answer).start()
        return future


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_submissions_of_one_turn_are_one_call_answered_by_position() -> None:
    service = FakeService()

    async def go() -> list[list[Admission]]:
        coalescer = Coalescer(service)  # type: ignore[arg-type]
        futures = [coalescer.admit([FakeTx("a")]), coalescer.admit([FakeTx("b1"), FakeTx("bad2")]),
                   coalescer.admit([FakeTx("c")])]
        return list(await asyncio.gather(*futures))

    answers = run(go())
    assert service.calls == [["a", "b1", "bad2", "c"]]
    assert [[r.tx_id or str(r.error) for r in rs] for rs in answers] == [[b"a"], [b"b1", "bad2"], [b"c"]]


def test_later_turns_make_their_own_calls() -> None:
    service = FakeService()

    async def go() -> None:
        coalescer = Coalescer(service)  # type: ignore[arg-type]
        first = coalescer.admit([FakeTx("a")])
        await first
        second = coalescer.admit([FakeTx("b")])
        assert (await second)[0].tx_id == b"b"

    run(go())
    assert service.calls == [["a"], ["b"]]


def test_a_failed_admission_reaches_every_submitter_of_the_turn() -> None:
    service = FakeService(fail_with=NodeUnavailable("the node is shutting down: retry once it has stopped"))

    async def go() -> list[BaseException]:
        coalescer = Coalescer(service)  # type: ignore[arg-type]
        futures = [coalescer.admit([FakeTx("a")]), coalescer.admit([FakeTx("b")])]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    errors = run(go())
    assert [type(e) for e in errors] == [NodeUnavailable, NodeUnavailable]
    assert "shutting down" in str(errors[0])


def test_a_refusal_before_queueing_reaches_every_submitter() -> None:
    async def go() -> list[BaseException]:
        coalescer = Coalescer(FakeService(refuse_now=True))  # type: ignore[arg-type]
        futures = [coalescer.admit([FakeTx("a")]), coalescer.admit([FakeTx("b")])]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    errors = run(go())
    assert all(isinstance(e, NodeUnavailable) and "not serving yet" in str(e) for e in errors)


def test_a_cancelled_request_does_not_stop_the_others_being_answered() -> None:
    service = FakeService()

    async def go() -> list[Admission]:
        coalescer = Coalescer(service)  # type: ignore[arg-type]
        gone = coalescer.admit([FakeTx("gone")])
        kept = coalescer.admit([FakeTx("kept")])
        gone.cancel()  # the client hung up while its tx was being admitted
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    kept = run(go())
    assert service.calls == [["gone", "kept"]] and kept[0].tx_id == b"kept"


def test_an_answer_after_the_server_stopped_is_dropped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """The pipeline finishes what was queued when the node stops, after the HTTP loop may have
    closed: the late answer must not raise in the pipeline's thread (nobody waits for it)."""
    service = FakeService()

    async def go() -> None:
        Coalescer(service).admit([FakeTx("late")])  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the flush runs; the answer comes 10 ms later, from a thread

    with caplog.at_level(logging.ERROR):
        run(go())
        deadline = time.monotonic() + 5
        while not service.answered and time.monotonic() < deadline:
            time.sleep(0.01)
    assert service.calls == [["late"]] and service.answered
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
