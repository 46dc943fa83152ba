"""The writer's unit of work: a write op, or a Batchable sharing statements with its neighbours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")


WriteOp = Callable[[aiosqlite.Connection], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Batchable:
    """A write that shares its statements with like writes next to it in the same group.

    ``handler(db, items)`` runs once for a run of neighbouring Batchables with the same
    handler and returns one result per item: a thread hop per group instead of per write.
    """

    handler: Callable[[aiosqlite.Connection, list[Any]], Awaitable[list[Any]]]
    item: Any
