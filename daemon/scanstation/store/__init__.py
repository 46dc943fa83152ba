"""Storage: SQLite through aiosqlite. All SQL of the station lives in this package.

Owns the schema and its migrations (schema.py), the one group-committing writer and the
readers (core.py), ``Store`` (database.py), joined from one module per table group
(sessions.py, captures.py, finished.py: the finished-capture write, outbox.py, catalog.py),
row converters (rows.py), and the query modules for the review API and dashboard
(review.py). May import: model, payloads, bus. Nothing above it (services, publish, web,
sources) is imported here.
"""

from scanstation.store.database import Store
from scanstation.store.errors import (
    Conflict,
    DatabaseDamaged,
    NotFound,
    StorageFull,
    StoreError,
    is_disk_full,
)
from scanstation.store.rows import (
    MQTT_DESTINATION,
    CaptureOutcome,
    ColumnTexts,
    NewCapture,
    OutboxEvent,
    build_outcome,
)
from scanstation.store.schema import SCHEMA_VERSION

__all__ = [
    "MQTT_DESTINATION",
    "SCHEMA_VERSION",
    "CaptureOutcome",
    "ColumnTexts",
    "Conflict",
    "DatabaseDamaged",
    "NewCapture",
    "NotFound",
    "OutboxEvent",
    "StorageFull",
    "Store",
    "StoreError",
    "build_outcome",
    "is_disk_full",
]
