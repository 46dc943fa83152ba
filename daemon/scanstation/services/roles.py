"""The three roles a person or a machine acts in, and the one rule comparing them.

``viewer`` reads (kiosk and fleet wall screens), ``operator`` also runs sessions, triggers,
manual entries, retries and proposal reviews, ``admin`` does everything (catalog, users,
configuration, the audit log). Web routes (``web/permissions.py``) and MQTT commands
(``publish/commands.py``) each keep their table of minimum roles and check it with ``allows``.
"""

from __future__ import annotations

from enum import StrEnum

from scanstation.services import ServiceError


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
ROLE_NAMES = tuple(r.value for r in Role)


def allows(role: Role, minimum: Role) -> bool:
    """Whether ``role`` may do what needs at least ``minimum``."""
    return _RANK[role] >= _RANK[minimum]


def parse_role(text: str) -> Role:
    """A role from its name; a ServiceError naming the value and the choices otherwise."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ServiceError(f"role {text!r} is not one of {', '.join(ROLE_NAMES)}") from None
