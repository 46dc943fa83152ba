"""What a fixed industrial reader adds: PLC links (Modbus TCP, OPC UA) and read quality."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from scanstation.config.base import Section


def _host_port(key: str, value: str, example: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{key} {value!r} must be host:port, e.g. {example}")
    return value


class ModbusConfig(Section):
    """Modbus TCP server for a PLC: read counters and the last result, write a trigger."""

    enabled: bool = Field(False, description="Serve Modbus TCP (see docs/outputs.md for the map)")
    listen: str = Field(
        "127.0.0.1:5020",
        description="host:port to listen on; Modbus has no authentication: keep it on loopback "
        "or a PLC-only network",
    )
    unit: int = Field(1, ge=1, le=247, description="Unit (device) id the server answers as")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port("modbus.listen", value, "127.0.0.1:5020")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class OpcUaConfig(Section):
    """OPC UA server (OPC 30010 AutoID): the station as a reader device with Scan and ScanResult."""

    enabled: bool = Field(False, description="Serve OPC UA (asyncua, loaded only when enabled)")
    endpoint: str = Field(
        "opc.tcp://127.0.0.1:4840/scanstation/",
        description="Endpoint URL to listen on; no security policy: keep it on loopback or a "
        "PLC-only network",
    )
    device_name: str = Field(
        "", description="Browse name of the AutoID device object (default: the device id)"
    )
    manufacturer: str = Field(
        "scanstation", max_length=200, description="DI Manufacturer of the device object"
    )
    model: str = Field(
        "scanstation barcode station", max_length=200, description="DI Model of the device object"
    )
    manual_url: str = Field(
        "", max_length=500, description="DI DeviceManual: where the station's manual is"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "opc.tcp" or not parts.hostname or parts.port is None:
            raise ValueError(
                f"opcua.endpoint {value!r} must be opc.tcp://host:port/path, e.g. "
                "opc.tcp://127.0.0.1:4840/scanstation/"
            )
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""


class QualityConfig(Section):
    """The quality trend per source (indicative, not an ISO/IEC 15416/15415 grade)."""

    alarm_below: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Alarm when a source's mean score over its last 50 reads falls below this "
        "(0: no alarm): labels fading, lens dirt, focus drift",
    )


class ObjectWindowConfig(Section):
    """One result per object: the cameras of a tunnel read into one window per object."""

    enabled: bool = Field(False, description="Group the cameras below into one object window")
    name: str = Field(
        "object",
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Source name the object's results carry (its read rate, its trigger)",
    )
    cameras: list[str] = Field(
        default_factory=list,
        description="Camera sources in the window (each with trigger = software); empty: "
        "every enabled camera whose trigger is software",
    )
    trigger: Literal["software", "gpio"] = Field(
        "software",
        description="What opens a window: software (HTTP, MQTT, Modbus coil 0) or gpio (the "
        "[gpio] trigger_input photo-eye)",
    )
    window_ms: int = Field(
        2000,
        ge=50,
        le=60_000,
        description="The longest an object window stays open; it closes sooner once every "
        "camera has read a code or closed its own read window",
    )


class NoReadImagesConfig(Section):
    """The no-read image ring: the last no-read (and optionally low-quality) frames kept."""

    enabled: bool = Field(True, description="Keep the last no-read frames in a ring")
    max_count: int = Field(200, ge=1, le=100_000, description="Frames kept at most")
    max_mb: float = Field(100.0, gt=0, description="Megabytes the ring may hold at most")
    reserve_free_mb: float = Field(
        500.0,
        ge=0,
        description="Free space the disk must keep: the oldest frames go first, and none is "
        "kept while the disk is below it",
    )
    low_quality_below: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Also keep the frames of reads scoring below this (0: no-reads only)",
    )
    upload_url: str = Field(
        "",
        description="POST every kept frame (image/jpeg) here through the durable outbox; '' "
        "= keep them on the station only",
    )
    upload_timeout_s: float = Field(10.0, gt=0, description="Seconds per upload attempt")
    upload_hmac_secret_file: Path | None = Field(
        None, description="Sign uploads as webhooks are (X-Scanstation-Signature)"
    )

    @field_validator("upload_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(
                f"noread_images.upload_url {value!r} must be an http:// or https:// URL"
            )
        return value
