"""Readers register themselves here by content type; `read_document` looks them up instead of an if-chain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kb.ingest.types import ParsedDocument, ReadLimits

ReaderFunc = Callable[[bytes, str, ReadLimits], ParsedDocument]


@dataclass(frozen=True)
class Reader:
    content_type: str
    label: str
    read: ReaderFunc


_READERS: dict[str, Reader] = {}


def reader(content_type: str, label: str) -> Callable[[ReaderFunc], ReaderFunc]:
    """Register `func(data, name, limits)` as the reader for `content_type` (shown to users as `label`)."""

    def register(func: ReaderFunc) -> ReaderFunc:
        _READERS[content_type] = Reader(content_type, label, func)
        return func

    return register


def find_reader(content_type: str) -> Reader | None:
    """The reader registered for `content_type`, if any."""
    return _READERS.get(content_type)


def accepted_labels() -> list[str]:
    """Human names of the accepted file types, in registration order."""
    return [r.label for r in _READERS.values()]
