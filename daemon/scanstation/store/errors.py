"""The store's exception root: StoreError and its not-found / conflict refusals."""

from __future__ import annotations


class StoreError(Exception):
    """A storage-level refusal; ``code`` is the HTTP-ish reason (not_found, conflict)."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class NotFound(StoreError):
    def __init__(self, what: str, public_id: str, field: str = "") -> None:
        super().__init__("not_found", f"{what} {public_id!r} does not exist", field)


class Conflict(StoreError):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__("conflict", message, field)
