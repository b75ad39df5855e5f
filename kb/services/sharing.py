"""How searches and answers share a few cores: an answer being generated comes first, searches use the rest.

A search takes tens of milliseconds and an answer's prompt takes seconds of every core, so twenty
searches computing at once give a generating answer a twenty-second share of the machine (first token
8.8 s alone, 38.5 s under 20 searching clients, BENCHMARKS.md). Three rules, none tied to a chat engine:
any generation that runs through `kb.services.threaded_stream` (llama.cpp, torch, a remote provider)
counts as an answer being generated.

- A turnstile: at most `size` searches compute at once (one more than the cores by default); the
  others wait asleep, and go in the order they came. A search spends part of its time waiting (on
  PostgreSQL, and on its full-text thread), so a place beyond the cores keeps them busy: 20 clients
  at 1M chunks got 50-58 searches/s with 3 places against 47-51 with 2, in three alternating rounds.
  While answers are being generated, searches get the cores the answers leave (`cores - answers`,
  at least one, never more than `size`), so the generation keeps a core.
  First come, first served matters under load: with a plain condition variable a client that had
  just finished took the freed place again before those already waiting, and 20 clients at 1M chunks
  saw a p50 of 69 ms beside a p95 of 1.4 s.
- An answer's own retrieval goes before waiting searches: it is the next step of a chat someone is
  watching.
- While an answer reads its prompt (from the start of its generation to its first piece), searches
  that are not for an answer hold back, each for at most `hold_ms`. Prompt reading is compute-bound
  on every core: a search beside it, even niced and on one core, took a 2.8-s first token to 4.2-4.7 s
  under 20 searching clients, and neither niced PostgreSQL backends nor single-threaded searches
  changed that; with a 3-s hold it stayed at 2.7-2.8 s (BENCHMARKS.md, Scale, session 31). The hold
  bounds what a search can lose to one prompt: searches' p95 under that load went from 0.7 to 3.1 s.
- Searches compute on threads with a raised nice value (`SEARCH_NICE`), so the kernel's scheduler
  gives a generating thread its CPU first and searches what it leaves; with no answer running they
  get every core. Linux applies the nice value of a thread id to that thread only; elsewhere this is
  a no-op.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

SEARCH_NICE = 10


def lower_thread_priority() -> None:
    """Give the calling thread the search nice value (a thread pool initializer)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SEARCH_NICE)


class CoreSharing:
    """The turnstile for searches, aware of the answers being generated (see the module docstring)."""

    def __init__(self, size: int, cores: int | None = None, hold_ms: float = 0.0):
        self.size = size
        self.cores = cores or size  # what generating answers share with searches
        self.hold = hold_ms / 1000  # how long a search may be held back by answers reading their prompts
        self.pool = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="kb-search", initializer=lower_thread_priority
        )
        self._changed = threading.Condition()
        self._searching = 0
        self._answering = 0
        self._reading = 0  # answers reading their prompt
        self._waiting: dict[bool, deque] = {True: deque(), False: deque()}  # for_answer → tickets in arrival order

    def _places(self, for_answer: bool, held: bool = False) -> int:
        if for_answer:
            return self.size
        if self._waiting[True] or (held and self._reading):
            return 0
        if self._answering:
            return max(1, min(self.size, self.cores) - self._answering)
        return self.size

    @contextlib.contextmanager
    def search(self, *, for_answer: bool = False) -> Iterator[float]:
        """Wait for a place to compute a search, in turn; yields how long the wait was, in milliseconds."""
        started = time.perf_counter()
        ticket, line = object(), self._waiting[for_answer]
        hold_until = started + self.hold
        with self._changed:
            line.append(ticket)
            try:
                while True:
                    held = time.perf_counter() < hold_until
                    if line[0] is ticket and self._searching < self._places(for_answer, held):
                        break
                    # Woken by any change; a search held back by a prompt wakes by itself when its hold ends.
                    self._changed.wait(hold_until - time.perf_counter() if held and self._reading else None)
            finally:
                line.remove(ticket)
                self._changed.notify_all()  # the next in line may have a place too
            self._searching += 1
        try:
            yield (time.perf_counter() - started) * 1000
        finally:
            with self._changed:
                self._searching -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def answering(self) -> Iterator[Callable[[], None]]:
        """Mark an answer as being generated for the duration of the block, reading its prompt until the
        callable it yields is called (at the answer's first piece)."""
        read = threading.Event()

        def prompt_read() -> None:
            if read.is_set():  # called at every piece of the answer: only the first takes the lock
                return
            with self._changed:
                if not read.is_set():
                    read.set()
                    self._reading -= 1
                    self._changed.notify_all()

        with self._changed:
            self._answering += 1
            self._reading += 1
        try:
            yield prompt_read
        finally:
            prompt_read()
            with self._changed:
                self._answering -= 1
                self._changed.notify_all()


_shared: dict[tuple[int, float], CoreSharing] = {}
_shared_lock = threading.Lock()


def core_sharing(search_concurrency: int = 0, hold_ms: float = 0.0) -> CoreSharing:
    """The process' CoreSharing for this many concurrent searches (0: one more than the core count), holding
    searches back for at most `hold_ms` while answers read their prompts."""
    cores = os.cpu_count() or 2
    size = search_concurrency or cores + 1
    with _shared_lock:
        if (size, hold_ms) not in _shared:
            _shared[size, hold_ms] = CoreSharing(size, cores, hold_ms)
        return _shared[size, hold_ms]


@contextlib.contextmanager
def answering() -> Iterator[Callable[[], None]]:
    """Mark an answer as being generated, for every CoreSharing of the process; call what it yields once the
    answer has read its prompt."""
    with _shared_lock:
        every = list(_shared.values())
    with contextlib.ExitStack() as stack:
        marks = [stack.enter_context(sharing.answering()) for sharing in every]

        def prompt_read() -> None:
            for mark in marks:
                mark()

        yield prompt_read
