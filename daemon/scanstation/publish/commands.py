"""Remote commands on ``{prefix}/{device}/cmd/{name}``: their bodies, parsing and replies."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scanstation.jsonlimits import JsonLimitError, loads_limited
from scanstation.model import MetadataError, validate_metadata
from scanstation.publish import PublishError
from scanstation.services.roles import Role, allows

COMMANDS = (
    "session.start",
    "session.end",
    "trigger",
    "capture.retry",
    "catalog.upsert",
    "telemetry.now",
    "outbox.replay",
)
"""Command names accepted on ``{prefix}/{device}/cmd/{name}``."""

COMMAND_ROLES: dict[str, Role] = {
    "session.start": Role.OPERATOR,
    "session.end": Role.OPERATOR,
    "trigger": Role.OPERATOR,
    "capture.retry": Role.OPERATOR,
    "catalog.upsert": Role.ADMIN,
    "telemetry.now": Role.VIEWER,
    # Resends what was delivered: the collector asks with the fleet's command token (admin);
    # a viewer's key may not make a station republish its history.
    "outbox.replay": Role.OPERATOR,
}
"""The least role of an API key that may run each command (the command token is admin)."""


COMMAND_QUEUE = 256


MAX_COMMAND_BYTES = 1024 * 1024
"""A command payload's size limit (catalog.upsert's 1000 products fit well within it)."""


CORRELATION_MEMORY = 1024
"""Correlation ids remembered (with their replies) so a repeated command runs once."""


# ---- commands ----------------------------------------------------------------------------


class CommandError(PublishError):
    """A command that cannot run: ``code`` is the reply's error code, ``field`` the culprit."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.correlation: bytes | None = None
        """The command's correlation id when it was read before the error was found."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionStart(_Body):
    capture_mode: Literal["barcode_scan", "product_photography", "both"] = "both"
    metadata: dict[str, Any] | None = None
    source: str = Field("mqtt", max_length=40)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_limits(cls, value: Any) -> dict[str, Any]:
        try:
            return validate_metadata(value)
        except MetadataError as exc:
            raise ValueError(str(exc)) from None


class SessionEnd(_Body):
    session_public_id: str = Field(min_length=1, max_length=40)


class Trigger(_Body):
    source: str | None = Field(None, max_length=40)


class CaptureRetry(_Body):
    capture_public_id: str = Field(min_length=1, max_length=40)


class Empty(_Body):
    pass


MAX_REPLAY = 100_000
"""Capture events one outbox.replay command may ask for."""


class OutboxReplay(_Body):
    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)

    @field_validator("to_seq")
    @classmethod
    def _range(cls, value: int, info: Any) -> int:
        low = info.data.get("from_seq")
        if low is not None and value < low:
            raise ValueError(f"to_seq {value} is below from_seq {low}")
        if low is not None and value - low + 1 > MAX_REPLAY:
            raise ValueError(f"the range holds {value - low + 1} events; at most {MAX_REPLAY}")
        return value


_BODIES: dict[str, type[_Body]] = {
    "session.start": SessionStart,
    "session.end": SessionEnd,
    "trigger": Trigger,
    "capture.retry": CaptureRetry,
    "telemetry.now": Empty,
    "outbox.replay": OutboxReplay,
}


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command, ready to run."""

    name: str
    body: Any
    """The validated body: a pydantic model, or the product list for catalog.upsert."""
    correlation: bytes | None
    """MQTT 5 Correlation Data, else the payload's ``correlation_id`` encoded."""
    response_topic: str | None
    """MQTT 5 Response Topic, None for 3.1.1 (the reply goes to ``…/cmd/{name}/reply``)."""


@dataclass(frozen=True, slots=True)
class CommandAuth:
    """Who may run commands: holders of a station API key or of the command token."""

    token: str | None = None
    """The secret read from ``[mqtt] command_token_file`` (None: API keys only)."""
    api_key_valid: Callable[[str], bool] | None = None
    """Whether a string is one of the station's API keys (None: no API keys accepted)."""
    api_key_role: Callable[[str], Role | None] | None = None
    """The role of a station API key, None for a string that is not one (used before
    ``api_key_valid``, whose keys count as admin keys)."""
    exempt: frozenset[str] = frozenset()
    """Commands run without a token (``[mqtt] commands_without_token``)."""


def authorize_command(name: str, authorization: str | None, auth: CommandAuth) -> None:
    """The one authorisation check of remote commands; CommandError "unauthorized" if refused.

    ``authorization`` is the MQTT 5 user property or the payload's top-level field, and must
    be ``Bearer <token>`` with the command token or a station API key.
    """
    if name in auth.exempt:
        return
    if not authorization:
        raise CommandError(
            "unauthorized",
            f"{name}: the command needs an 'authorization: Bearer <token>' user property "
            '(MQTT 5) or an "authorization" field, with a station API key or the command token',
            "authorization",
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CommandError(
            "unauthorized",
            f"{name}: authorization must be 'Bearer <token>'",
            "authorization",
        )
    role = _token_role(token, auth)
    if role is None:
        raise CommandError(
            "unauthorized", f"{name}: the authorization token is not valid", "authorization"
        )
    minimum = COMMAND_ROLES.get(name, Role.ADMIN)
    if not allows(role, minimum):
        raise CommandError(
            "forbidden",
            f"{name}: the API key has the {role.value} role; the command needs {minimum.value}",
            "authorization",
        )


def _token_role(token: str, auth: CommandAuth) -> Role | None:
    if auth.token and hmac.compare_digest(token.encode(), auth.token.encode()):
        return Role.ADMIN
    if auth.api_key_role is not None and (role := auth.api_key_role(token)) is not None:
        return role
    if auth.api_key_valid is not None and auth.api_key_valid(token):
        return Role.ADMIN
    return None


def parse_command(
    name: str,
    payload: bytes,
    correlation: bytes | None,
    response_topic: str | None,
    *,
    auth: CommandAuth,
    authorization: str | None = None,
) -> Command:
    """Validate and authorise a command message; CommandError names what is wrong.

    ``authorization``: the MQTT 5 ``authorization`` user property, when the message had one.
    """
    if name not in COMMANDS:
        raise CommandError(
            "unknown_command",
            f"unknown command {name!r}; expected one of {', '.join(COMMANDS)}",
        )
    text = payload.decode("utf-8", errors="replace").strip()
    try:
        data = loads_limited(text, max_bytes=MAX_COMMAND_BYTES) if text else {}
    except JsonLimitError as exc:
        if exc.kind == "invalid":
            raise CommandError("bad_request", f"{name}: payload is {exc}") from None
        code = "payload_too_large" if exc.kind == "too_large" else "bad_request"
        raise CommandError(code, f"{name}: payload: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(
            "bad_request", f"{name}: payload must be a JSON object, got {type(data).__name__}"
        )
    if "correlation_id" in data:
        cid = data.pop("correlation_id")
        if not isinstance(cid, str | int) or isinstance(cid, bool) or len(str(cid)) > 128:
            raise CommandError(
                "invalid",
                f"{name}: correlation_id must be a string or number of at most 128 characters",
                "correlation_id",
            )
        correlation = correlation or str(cid).encode()
    field = data.pop("authorization", None)
    try:
        if authorization is None and field is not None:
            if not isinstance(field, str):
                raise CommandError(
                    "unauthorized", f"{name}: authorization must be a string", "authorization"
                )
            authorization = field
        authorize_command(name, authorization, auth)
        return Command(name, _command_body(name, data), correlation, response_topic)
    except CommandError as exc:
        exc.correlation = correlation
        raise


def _command_body(name: str, data: dict[str, Any]) -> Any:
    if name == "catalog.upsert":
        return _catalog_products(data)
    try:
        return _BODIES[name].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            fields = ", ".join(_BODIES[name].model_fields) or "no fields"
            message = f"unknown field; {name} takes {fields}"
        raise CommandError("invalid", f"{name}: {where or 'payload'}: {message}", where) from None


def _catalog_products(data: dict[str, Any]) -> list[dict[str, Any]]:
    from scanstation.services.catalog import CatalogError, parse_products

    if "products" in data and (not isinstance(data["products"], list) or not data["products"]):
        raise CommandError(
            "invalid", "catalog.upsert: products must be a non-empty list", "products"
        )
    if len(data.get("products", [])) > 1000:
        raise CommandError(
            "invalid", "catalog.upsert: at most 1000 products per command", "products"
        )
    try:
        return parse_products(json.dumps(data), "catalog.upsert")
    except CatalogError as exc:
        raise CommandError("invalid", str(exc), "products") from None


def reply_payload(
    command: str, correlation: bytes | None, result: Any = None, error: CommandError | None = None
) -> bytes:
    body: dict[str, Any] = {"command": command, "ok": error is None}
    if correlation is not None:
        body["correlation_id"] = correlation.decode("utf-8", errors="backslashreplace")
    if error is None:
        body["result"] = result
    else:
        body["error"] = {"code": error.code, "message": str(error), "field": error.field}
    return json.dumps(body).encode()
