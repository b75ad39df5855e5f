"""A blocking model stream run in its own thread and read from async code; closing it cancels the model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from kb.ml.types import GenerationCancelled
from kb.services.sharing import answering

T = TypeVar("T")
DISCONNECT_POLL_SECONDS = 0.25
_END = object()
_running = 0
_running_lock = threading.Lock()


def running_generations() -> int:
    """How many producers are still running in this process (a cancelled one counts until it has stopped)."""
    return _running


def _count_running(change: int) -> None:
    global _running
    with _running_lock:
        _running += change


@dataclass
class _Failure:
    error: BaseException


class ThreadedStream(Generic[T]):
    """Runs `produce(cancel)` in a daemon thread; `next()` hands over its items one by one.

    The event loop never blocks on the model, and `close()` (or a client that went away while
    `next()` waited) sets the cancel event, which the model checks between tokens and while it
    waits its turn.
    """

    def __init__(self, produce: Callable[[threading.Event], Iterator[T]]):
        self.cancel = threading.Event()
        self._produce = produce
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._finished = False
        self._next_disconnect_check = 0.0
        self._thread = threading.Thread(target=self._run, name="kb-generation", daemon=True)
        _count_running(1)
        self._thread.start()

    def _put(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            self.cancel.set()  # the event loop is gone (server shutting down): nobody is listening

    def _run(self) -> None:
        items: Iterator[T] | None = None
        try:
            # Searches step back while a model generates, and more while it reads its prompt (kb.services.sharing).
            with answering() as prompt_read:
                items = self._produce(self.cancel)
                # Not left at the cancel: the model raises GenerationCancelled at its next token, and the
                # producer can then keep the partial answer (see kb.rag.answer).
                for item in items:
                    prompt_read()
                    self._put(item)
        except BaseException as exc:  # handed to the reader, who decides how to report it
            self._put(_Failure(exc))
        finally:
            if isinstance(items, Generator):
                items.close()  # runs the producer's cleanup (e.g. releasing the model's lock) now, not at GC
            self._put(_END)
            _count_running(-1)

    async def next(self, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> T:
        """The next item; StopAsyncIteration at the end, the producer's error re-raised here.

        With `is_disconnected`, a client that leaves while the model is still thinking (or queued)
        cancels it and raises GenerationCancelled.
        """
        while not self._finished:
            # checked on a timer, not only when the model is silent: a busy model must notice too
            if is_disconnected is not None and time.monotonic() >= self._next_disconnect_check:
                self._next_disconnect_check = time.monotonic() + DISCONNECT_POLL_SECONDS
                if await is_disconnected():
                    self.close()
                    raise GenerationCancelled("the client disconnected before the answer was ready")
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout=DISCONNECT_POLL_SECONDS)
            except TimeoutError:
                continue
            if item is _END:
                self._finished = True
                break
            if isinstance(item, _Failure):
                raise item.error
            return item  # type: ignore[return-value]
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop the producer at its next check; safe to call more than once and after the end."""
        self.cancel.set()
