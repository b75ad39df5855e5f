"""Searches and generating answers share the cores: answers first, searches with what is left."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kb.services import sharing
from kb.services.sharing import CoreSharing
from kb.services.threaded_stream import ThreadedStream


def _enters(cores: CoreSharing, *, for_answer: bool = False) -> tuple[threading.Thread, threading.Event]:
    """A thread that takes a search place and keeps it until the returned event is set; started."""
    admitted, leave = threading.Event(), threading.Event()

    def run():
        with cores.search(for_answer=for_answer):
            admitted.set()
            leave.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.admitted, thread.leave = admitted, leave
    return thread, admitted


def _read(produce) -> list:
    """Every item of a ThreadedStream over `produce`, read on a loop of its own in a thread of its own (a browser
    test earlier in the run may leave this thread's loop running)."""

    async def read():
        stream, items = ThreadedStream(produce), []
        with contextlib.suppress(StopAsyncIteration):
            while True:
                items.append(await stream.next())
        return items

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(read())).result()


def test_a_generating_answer_keeps_a_core_from_searches():
    cores = CoreSharing(2)
    with cores.answering():
        first, first_in = _enters(cores)
        second, second_in = _enters(cores)
        assert first_in.wait(5)
        assert not second_in.wait(0.3), "with an answer generating, two cores give searches one place"
    assert second_in.wait(5), "the place comes back when the answer is done"
    first.leave.set(), second.leave.set()


def test_places_beyond_the_cores_are_not_given_to_searches_while_an_answer_generates():
    cores = CoreSharing(3, cores=2)
    idle = [_enters(cores) for _ in range(3)]
    assert all(entered.wait(5) for _, entered in idle), "with no answer, every place is used"
    for thread, _ in idle:
        thread.leave.set()
    with cores.answering():
        first, first_in = _enters(cores)
        second, second_in = _enters(cores)
        assert first_in.wait(5)
        assert not second_in.wait(0.3), "an answer on two cores leaves searches one place, not size - 1"
        first.leave.set()
        assert second_in.wait(5)
        second.leave.set()


def test_an_answers_retrieval_goes_before_waiting_searches():
    cores = CoreSharing(1)
    holder, held = _enters(cores)
    assert held.wait(5)
    waiting, waiting_in = _enters(cores)
    answer, answer_in = _enters(cores, for_answer=True)
    assert not waiting_in.wait(0.3) and not answer_in.is_set()
    holder.leave.set()
    assert answer_in.wait(5)
    assert not waiting_in.wait(0.3), "the plain search waits for the answer's retrieval"
    answer.leave.set()
    assert waiting_in.wait(5)
    waiting.leave.set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_searches_compute_on_threads_of_lower_priority():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    seen = CoreSharing(1).pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert seen == max(own, sharing.SEARCH_NICE)


def test_a_model_stream_counts_as_an_answer_being_generated_while_it_runs():
    cores = sharing.core_sharing(3)
    seen = []

    def produce(cancel):
        seen.append(cores._answering)
        yield "token"

    assert _read(produce) == ["token"]
    assert seen == [1]
    assert cores._answering == 0


def test_waiting_searches_go_in_the_order_they_came():
    cores = CoreSharing(1)
    holder, held = _enters(cores)
    assert held.wait(5)
    queued = []
    for n in range(5):
        queued.append(_enters(cores))
        for _ in range(500):  # this one is in line before the next one comes
            if len(cores._waiting[False]) == n + 1:
                break
            threading.Event().wait(0.01)
    holder.leave.set()
    for n, (thread, admitted) in enumerate(queued):
        assert admitted.wait(5)
        assert not any(later.wait(0.05) for _, later in queued[n + 1 :]), f"a later search went before search {n}"
        thread.leave.set()
    newcomer, newcomer_in = _enters(cores)  # nobody waiting: straight in
    assert newcomer_in.wait(5)
    newcomer.leave.set()


def test_searches_hold_back_while_an_answer_reads_its_prompt_and_take_their_place_once_it_has():
    cores = CoreSharing(3, cores=2, hold_ms=30_000)
    with cores.answering() as prompt_read:
        search, admitted = _enters(cores)
        assert not admitted.wait(0.3), "a search waits while the answer reads its prompt"
        prompt_read()
        assert admitted.wait(5), "then it gets the core the generating answer leaves"
        search.leave.set()


def test_a_search_is_held_back_by_a_prompt_for_at_most_the_hold():
    cores = CoreSharing(3, cores=2, hold_ms=400)
    with cores.answering():
        search, admitted = _enters(cores)
        assert not admitted.wait(0.15)
        assert admitted.wait(5), "the hold ends even if the prompt is still being read"
        search.leave.set()


def test_an_answers_retrieval_is_not_held_back_by_another_answers_prompt():
    cores = CoreSharing(3, cores=2, hold_ms=30_000)
    with cores.answering():
        retrieval, admitted = _enters(cores, for_answer=True)
        assert admitted.wait(5)
        retrieval.leave.set()


def test_without_a_hold_searches_only_step_back_to_the_cores_answers_leave():
    cores = CoreSharing(3, cores=2)
    with cores.answering():
        search, admitted = _enters(cores)
        assert admitted.wait(5)
        search.leave.set()


def test_a_model_stream_reads_its_prompt_until_its_first_piece():
    cores = sharing.core_sharing(3, 30_000)
    seen = []

    def produce(cancel):
        seen.append(cores._reading)
        yield "first"
        seen.append(cores._reading)
        yield "second"

    assert _read(produce) == ["first", "second"]
    assert seen == [1, 0] and cores._reading == 0 and cores._answering == 0
