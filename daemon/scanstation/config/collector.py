"""[collector]: the fleet collector (`scanstation collector`), PostgreSQL and its MQTT group."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from scanstation.config.base import Section


class CollectorConfig(Section):
    database: str = Field(
        "",
        description=(
            'PostgreSQL connection URI, e.g. "postgresql://collector@db.example/fleet" '
            "(libpq: PGPASSWORD or ~/.pgpass for the password)"
        ),
    )
    password_file: Path | None = Field(
        None, description="File holding the database password (trailing newline ignored)"
    )
    group: str = Field(
        "scanstation-collectors",
        pattern=r"^[^#+/]+$",
        max_length=64,
        description="Shared-subscription group: collectors of one group share the load",
    )
    retention_days: int = Field(
        400, ge=1, description="Monthly partitions older than this are dropped"
    )
    command_token_file: Path | None = Field(
        None,
        description=(
            "File holding the fleet's command token (the stations' `[mqtt] "
            "command_token_file`); `outbox.replay` requests carry it"
        ),
    )
    batch_size: int = Field(
        1000, ge=1, le=50_000, description="Messages stored in one transaction at most"
    )
    batch_linger_ms: float = Field(
        20, ge=0, le=5000, description="How long a partial batch waits for more messages"
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description=(
            "MQTT version of the consuming connection. 5: Session Expiry and Receive Maximum; "
            "3.1.1: the session kept until the broker expires it, the broker's inflight "
            "limit the only window. The same CPU per message either way. Commands always go "
            "over MQTT 5"
        ),
    )
    receive_maximum: int = Field(
        4000,
        ge=1,
        le=65535,
        description="Unacknowledged messages the broker may send at once (MQTT 5 Receive Maximum)",
    )
    session_expiry_s: int = Field(
        300,
        ge=0,
        description=(
            "How long the broker keeps this collector's session while it is away (its share "
            "of the messages waits there; after it, the others heal the gap by replay)"
        ),
    )
    gap_check_interval_s: float = Field(
        5, gt=0, le=3600, description="Seconds between two looks for seq gaps (by one collector)"
    )
    gap_grace_s: float = Field(
        10, gt=0, description="Seconds a seq gap may last (messages in flight) before a replay"
    )
    replay_interval_s: float = Field(
        60, gt=0, description="Seconds before the same missing range is requested again"
    )
    replay_max: int = Field(
        5000, ge=1, le=100_000, description="Events asked for in one outbox.replay command"
    )

    http: bool = Field(
        False,
        description=(
            "Serve the read-only fleet view on `[http] bind` (X-API-Key from "
            "`[http] api_keys_file`, made with `scanstation api-key create`)"
        ),
    )
    offline_after_minutes: float = Field(
        10, gt=0, description="A station silent this long is offline (and alerted once)"
    )
    noread_alert_rate: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Alert when a station's no-reads exceed this share of its reads in an hour",
    )
    noread_alert_min_events: int = Field(
        50, ge=1, description="Reads + no-reads an hour needs before its rate is judged"
    )
    alert_webhook_url: str = Field(
        "",
        description="POST every alert (JSON) here too; empty: MQTT `{prefix}/_fleet/alerts` only",
    )

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError(f"alert_webhook_url {value!r} must be an http(s):// URL")
        return value

    @field_validator("database")
    @classmethod
    def _postgres_uri(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"database {value!r} must be a postgresql:// URI, "
                'e.g. "postgresql://collector@127.0.0.1:5432/fleet"'
            )
        return value
