"""Rows to records, one way: a store's frozen dataclass is filled from the ORM row's attributes of the same name."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

R = TypeVar("R")

_CONTAINERS = {"dict": dict, "list": list}


def record_of(cls: type[R], row: object, **values: Any) -> R:
    """`cls` from `row`: each field is the row's attribute, unless given in `values` (counts, joined ids) or
    left to its default when the row has no such attribute.

    JSON columns come out as fresh dicts and lists (empty for NULL), so a record never shares state with
    the session's row.
    """
    for field in fields(cls):
        if field.name in values:
            continue
        has_default = field.default is not MISSING or field.default_factory is not MISSING
        if has_default and not hasattr(row, field.name):
            continue
        value = getattr(row, field.name)
        container = _CONTAINERS.get(str(field.type).split("[", 1)[0])
        values[field.name] = container(value or ()) if container is not None else value
    return cls(**values)
