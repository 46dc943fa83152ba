"""The station's own sections: [device], [storage], [session], [checks], [gs1]."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from scanstation.config.base import Section


class Location(Section):
    lat: float = Field(0.0, ge=-90, le=90, description="Latitude in degrees")
    lon: float = Field(0.0, ge=-180, le=180, description="Longitude in degrees")


class DeviceConfig(Section):
    id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Device id used in MQTT topics and events (default: the hostname)",
    )
    site: str = Field("", description="Site name carried in events, e.g. a store number")
    location: Location | None = Field(None, description="Where the device stands")
    timezone: str = Field(
        "UTC", description="IANA timezone for date checks (expiry is judged in local time)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}; expected an IANA name") from exc
        return value


class BackupConfig(Section):
    path: Path | None = Field(
        None,
        description="Folder for scheduled backups (`scanstation backup` files named "
        "`<device>-<UTC time>.backup`); unset: no scheduled backups",
    )
    interval_h: float = Field(24.0, gt=0, le=24 * 31, description="Hours between two backups")
    keep: int = Field(
        7, ge=1, le=1000, description="Scheduled backups kept in the folder; older ones go"
    )
    passphrase_file: Path | None = Field(
        None, description="File holding a passphrase: scheduled backups are then encrypted"
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Also send each scheduled backup here (HTTP POST of the file, "
        "application/octet-stream, its name in X-Scanstation-Backup)",
    )
    token_file: Path | None = Field(
        None, description="File holding a token sent as `Authorization: Bearer <token>` to url"
    )


class StorageConfig(Section):
    path: Path = Field(
        Path("/var/lib/scanstation"), description="Directory of the SQLite database and images"
    )
    image_retention_days: int = Field(
        30, ge=0, description="Delete stored images older than this (0 keeps them forever)"
    )
    disk_floor_mb: int = Field(
        200, ge=0, description="Below this much free disk, new captures are refused visibly"
    )
    synchronous: Literal["full", "normal"] = Field(
        "full",
        description="SQLite synchronous mode: full makes every acknowledged capture durable",
    )
    commit_interval_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description=(
            "Group commit: extra wait for more writes before a commit. 0 (default): writes "
            "queued while a commit is on its way to disk form the next group by themselves"
        ),
    )


class SessionConfig(Section):
    capture_mode: Literal["barcode_scan", "product_photography", "both"] = "both"
    idle_timeout: float = Field(
        1800, gt=0, description="Seconds without a capture before an ACTIVE session EXPIREs"
    )
    auto: bool = Field(True, description="One rolling session per source, started automatically")


class ChecksConfig(Section):
    expiry: bool = Field(True, description="Flag items whose AI 17 date is before today")
    recall_list: Path | None = Field(
        None,
        description="CSV with the header gtin,batch: a batch recalls that batch (AI 10) of the "
        "GTIN, an empty batch every batch; read at start (restart after updating it)",
    )


class Gs1Config(Section):
    gs_substitutes: list[str] = Field(
        default_factory=list, description="Visible stand-ins for GS that scanners send"
    )
