"""[mqtt] and [http]: the broker link and the local web server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from scanstation.config.base import Section


class TlsConfig(Section):
    ca: Path | None = Field(
        None, description="CA bundle that signed the broker's certificate; default: system CAs"
    )
    cert: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    key: Path | None = Field(None, description="Private key of the client certificate (PEM)")
    insecure: bool = Field(False, description="Skip server verification (never in production)")
    alpn: list[str] = Field(
        default_factory=list,
        description="ALPN protocols, e.g. ['x-amzn-mqtt-ca'] for AWS IoT Core on port 443",
    )

    @field_validator("key")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info: Any) -> Path | None:
        if value is not None and info.data.get("cert") is None:
            raise ValueError("tls.key is set but tls.cert is not; give both or neither")
        return value


class MqttConfig(Section):
    host: str = Field("", description="Broker host; empty turns MQTT off (the outbox keeps events)")
    port: int = Field(1883, gt=0, lt=65536, description="1883 plain, 8883 TLS by convention")
    tls: TlsConfig | None = Field(None, description="TLS with server verification when set")
    username: str = ""
    password_file: Path | None = Field(
        None,
        description="File holding the password (read at every connect; trailing newline ignored)",
    )
    topic_prefix: str = Field("scanstation", pattern=r"^[^#+]+$")
    keepalive: int = Field(30, ge=5, le=3600, description="Seconds; a dead link shows after 1.5×")
    client_id: str = Field("", max_length=128, description="Default: scanstation-<device id>")
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="5 falls back to 3.1.1 when the broker refuses MQTT 5"
    )
    homeassistant_discovery: bool = False
    homeassistant_prefix: str = Field("homeassistant", pattern=r"^[^#+]+$")
    telemetry_interval: float = Field(30, gt=0, description="Seconds between telemetry messages")
    inflight: int = Field(20, ge=1, le=1000, description="Unacknowledged publishes at once")
    max_payload_bytes: int = Field(
        131072,
        ge=1024,
        description="Larger events are dead-lettered, not sent (AWS IoT Core's limit is 128 KB)",
    )
    dead_letter_after: int = Field(
        5, ge=1, description="Refusals by the broker before an event moves to outbox_dead"
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay (jittered)")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay (jittered)")
    publish_rate_limit: float = Field(
        0, ge=0, description="Most outbox events published per second; 0: no limit (AWS IoT: 100)"
    )
    keep_delivered_hours: float = Field(
        168,
        ge=0,
        description=(
            "Hours delivered events stay in the outbox so `outbox.replay` can resend them; "
            "0 deletes them on PUBACK"
        ),
    )
    command_token_file: Path | None = Field(
        None,
        description=(
            "File holding a secret that authorises remote commands (`authorization: Bearer "
            "<secret>`) besides the station's API keys"
        ),
    )
    commands_without_token: list[
        Literal[
            "session.start",
            "session.end",
            "trigger",
            "capture.retry",
            "catalog.upsert",
            "telemetry.now",
            "outbox.replay",
        ]
    ] = Field(
        default_factory=list,
        description='Commands run without a token, e.g. ["telemetry.now"]; default: none',
    )


class HttpConfig(Section):
    bind: str = Field("127.0.0.1:8080", description="host:port to listen on")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header allowlist (DNS-rebinding guard); empty: the bind host + localhost",
    )
    api_keys_file: Path | None = Field(
        None, description="Hashed API keys; default: <storage.path>/api_keys.json"
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_upload_pixels: int = Field(40_000_000, gt=0)
    max_json_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest JSON body accepted (chunked bodies too)"
    )
    max_connections: int = Field(
        256,
        ge=4,
        description="Open connections at most; beyond it the longest-idle one is closed",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a connection may sit without a request in progress"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a client may take to send a JSON body (then 408)"
    )

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bind {value!r} must be host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])
