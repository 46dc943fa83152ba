"""``Store``: the one object callers use, joined from the table groups.

The connection, the writer task with group commit and the reads are in store/core.py;
each table group's methods in its own module: sessions.py, captures.py (the PENDING insert
and reads), finished.py (the finished-capture write), outbox.py, catalog.py.
"""

from __future__ import annotations

from scanstation.store.catalog import CatalogStore
from scanstation.store.finished import FinishStore
from scanstation.store.outbox import OutboxStore, id_ranges
from scanstation.store.sessions import SessionStore

__all__ = ["Store", "id_ranges"]


class Store(SessionStore, FinishStore, OutboxStore, CatalogStore):
    """The database: one writer task with group commit, one reader connection."""
