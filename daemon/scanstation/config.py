"""Typed, strict configuration: TOML file + SCANSTATION_<SECTION>_<KEY> environment overrides.

Unknown keys are errors (exit 2 naming the key and the file). Loaded once, passed down.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG_PATHS = (Path("/etc/scanstation/scanstation.toml"), Path("scanstation.toml"))
ENV_PREFIX = "SCANSTATION_"
NOT_CONFIG_ENV = frozenset({"SCANSTATION_CONFIG", "SCANSTATION_LOG_LEVEL"})
"""Variables of the command line itself, not overrides of config keys."""


class ConfigError(Exception):
    """A configuration problem; the message names the key, the file and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Section):
    lat: float = Field(0.0, ge=-90, le=90, description="Latitude in degrees")
    lon: float = Field(0.0, ge=-180, le=180, description="Longitude in degrees")


class DeviceConfig(_Section):
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


class StorageConfig(_Section):
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


class _SourceBase(_Section):
    name: str = Field(
        ..., min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$", description="Source name"
    )
    enabled: bool = True


class CameraSourceConfig(_SourceBase):
    type: Literal["camera"]
    backend: Literal["picamera2", "opencv", "file"] = Field(
        "opencv",
        description="picamera2 (Pi camera modules), opencv (USB/V4L2, RTSP, video files), "
        "file (image folder or video replayed at fps)",
    )
    device: str = Field("0", description="Camera index, V4L2 path, RTSP URL, video file or folder")
    resolution: tuple[int, int] = Field((1280, 720), description="Width and height in pixels")
    fps: float = Field(15.0, gt=0, le=120, description="Frames per second asked; replay pace")
    formats: list[str] = Field(
        default_factory=list, description="zxing-cpp format names; empty means all"
    )
    roi: tuple[float, float, float, float] | None = Field(
        None, description="Region of interest as fractions: x, y, width, height"
    )
    trigger: Literal["continuous", "gpio", "software"] = Field(
        "continuous",
        description="continuous: always reading; software (HTTP/MQTT) or gpio (photo-eye): "
        "read windows, with a no-read image when one ends without a code",
    )
    read_window_ms: int = Field(
        1000, gt=0, description="Read window after a trigger; ends early on the first good read"
    )
    dedup_window_s: float = Field(
        2.0, ge=0, description="A code must be out of view this long before it is read again"
    )
    autofocus: Literal["continuous", "auto", "manual"] = Field(
        "continuous",
        description="picamera2 autofocus modules: continuous, auto (one cycle at start), or "
        "manual at lens_position",
    )
    lens_position: float | None = Field(None, ge=0, description="Manual focus, dioptres")
    loop: bool = Field(False, description="file backend: replay the files forever")
    decode_threads: int = Field(0, ge=0, description="Decoder threads; 0 uses every core")
    try_invert: bool = Field(
        False,
        description="Also look for light-on-dark codes in the whole frame (about 2× decode time)",
    )
    retries: bool = Field(
        True,
        description="Frames the first pass read nothing in: deskew 1-D-looking regions; "
        "contrast/upscale small images",
    )
    skip_static: bool = Field(
        True, description="Do not decode a frame again while the scene has not changed"
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="Preview and no-read image quality")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        from scanstation.decode import DecodeError, parse_formats

        try:
            parse_formats(value)
        except DecodeError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("roi")
    @classmethod
    def _roi_inside_frame(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        x, y, w, h = value
        inside = 0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1
        if not inside or x + w > 1.0001 or y + h > 1.0001:
            raise ValueError(
                f"roi {value!r}: expected fractions x, y, width, height inside the frame "
                "(0 ≤ x, y < 1; 0 < width, height ≤ 1; x + width ≤ 1; y + height ≤ 1)"
            )
        return value


class HidSourceConfig(_SourceBase):
    type: Literal["hid"]
    device: str = Field(
        "auto",
        description="/dev/input/by-id/…-event-kbd path, or auto: every device whose name "
        "looks like a barcode scanner",
    )
    layout: Literal["us", "uk", "de", "fr", "es", "it"] = Field(
        "us", description="Keyboard country the scanner is programmed for (not the console's)"
    )
    grab: bool = Field(True, description="Grab the device so keystrokes never reach the console")
    gs_substitutes: list[str] = Field(
        default_factory=list, description="Text the scanner sends in place of GS, e.g. '<GS>'"
    )
    function_keys: dict[str, str] = Field(
        default_factory=dict, description="Function key to text, e.g. {F8 = '\\u001d'}"
    )
    prefix: str = Field("", description="Text every scan starts with (stripped; else dropped)")
    suffix: str = Field("", description="Text every scan ends with (stripped; else dropped)")
    terminator: Literal["enter", "tab", "none"] = Field(
        "enter", description="Key that ends a scan; none: a pause (or the suffix) ends it"
    )
    inter_key_timeout_ms: int = Field(
        50, gt=0, description="A longer gap ends a scan (humans type slower than scanners)"
    )
    aim_identifier: bool = Field(
        True, description="Split a leading AIM symbology identifier (]d2) off the value"
    )
    min_length: int = Field(1, ge=1, description="Shorter scans are dropped as stray key presses")

    @field_validator("function_keys")
    @classmethod
    def _function_key_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not (name.startswith("F") and name[1:].isdigit() and 1 <= int(name[1:]) <= 24):
                raise ValueError(f"unknown function key {name!r}; expected F1 to F24")
        return value

    @field_validator("gs_substitutes")
    @classmethod
    def _non_empty_substitutes(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("a GS substitute is empty; expected visible text such as '<GS>'")
        return value


class SerialSourceConfig(_SourceBase):
    type: Literal["serial"]
    port: str = Field(..., description="e.g. /dev/ttyACM0 or /dev/serial/by-id/…")
    baud: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = Field(8, description="Data bits (RS-232 scanners: often 7 or 8)")
    parity: Literal["none", "even", "odd"] = "none"
    stopbits: Literal[1, 2] = 1
    terminator: str = Field(
        "\r\n", description="Frame terminator; any of its characters ends a frame; '' = pause"
    )
    frame_timeout_ms: int = Field(
        100, gt=0, description="A pause this long ends a frame that has no terminator yet"
    )
    encoding: Literal["utf-8", "latin-1", "cp1252"] = Field(
        "utf-8", description="How the scanner's bytes are read as text"
    )
    gs_substitutes: list[str] = Field(default_factory=list)
    aim_identifier: bool = Field(
        True, description="Split a leading AIM symbology identifier (]d2) off the value"
    )

    @field_validator("gs_substitutes")
    @classmethod
    def _non_empty_substitutes(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("a GS substitute is empty; expected visible text such as '<GS>'")
        return value


class StdinSourceConfig(_SourceBase):
    type: Literal["stdin"]
    gs_substitutes: list[str] = Field(
        default_factory=lambda: ["\\x1d"], description="Typed stand-ins for GS"
    )


class ReplaySourceConfig(_SourceBase):
    type: Literal["replay"]
    file: Path | None = Field(
        None, description="Text file of raw values, one per line (default: bundled samples)"
    )
    interval_s: float = Field(1.0, ge=0, description="Pause between replayed scans")
    loop: bool = False


SourceConfig = Annotated[
    CameraSourceConfig
    | HidSourceConfig
    | SerialSourceConfig
    | StdinSourceConfig
    | ReplaySourceConfig,
    Field(discriminator="type"),
]


class SessionConfig(_Section):
    capture_mode: Literal["barcode_scan", "product_photography", "both"] = "both"
    idle_timeout: float = Field(
        1800, gt=0, description="Seconds without a capture before an ACTIVE session EXPIREs"
    )
    auto: bool = Field(True, description="One rolling session per source, started automatically")


class ClassifierConfig(_Section):
    enabled: bool = Field(
        True, description="Classify IMAGE captures and no-read frames (ENRICHING, RESOLVING)"
    )
    model: Path | None = Field(
        None,
        description="An image-classification .tflite; default: the shipped EfficientNet-Lite0",
    )
    labels: Path | None = Field(
        None,
        description="Labels file, one class per line; default: <model>.txt, labels.txt or "
        "imagenet_labels.txt beside the model",
    )
    threads: int = Field(2, ge=1, le=16, description="Interpreter threads (XNNPACK)")
    top_k: int = Field(5, ge=1, le=50, description="Classes kept per image, best first")
    min_confidence: float = Field(
        0.2, ge=0, le=1, description="Propose nothing below this score (0-1)"
    )
    resolve_threshold: float = Field(
        0.6,
        ge=0,
        le=1,
        description="RESOLVING: least cosine similarity to a product's reference photo for a "
        "match; below it the capture is NOT_FOUND",
    )
    center_crop: bool = Field(
        True, description="Crop photos to the model's aspect ratio (centre) before resizing"
    )


class QrAnalysisConfig(_Section):
    enabled: bool = Field(True, description="Follow the redirect chain of http(s) QR codes")
    max_hops: int = Field(
        5, ge=0, le=20, description="Redirects followed at most (0: only the first request)"
    )
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds for the whole chain")
    allow_private_networks: bool = Field(
        False, description="Lab only: allow loopback/private addresses (never on a lane)"
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Lab only: networks (CIDR) allowed although not public, e.g. 10.9.0.0/24",
    )
    max_body_bytes: int = Field(
        65536, ge=0, le=4 * 1024 * 1024, description="Bytes of a final page read at most"
    )
    cache_seconds: float = Field(
        600, ge=0, description="How long an analysed URL's result is reused (0: no cache)"
    )
    cache_entries: int = Field(1024, ge=0, le=100_000, description="Results kept in the cache")
    closient_domains: list[str] = Field(
        default_factory=lambda: ["closient.com"],
        description="Domains (and their subdomains) of Closient resolvers",
    )
    shortener_domains: list[str] = Field(
        default_factory=list,
        description="Extra URL-shortener domains besides the built-in list (bit.ly, …)",
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"allow_networks entry {text!r} is not a network; expected CIDR such as "
                    "'10.9.0.0/24' or an address such as '192.168.1.20'"
                ) from None
        return value


class TlsConfig(_Section):
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


class MqttConfig(_Section):
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


class HttpConfig(_Section):
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


BeepPattern = tuple[int, int, int]
"""on ms, off ms, repetitions: [60, 0, 1] is one short beep, [150, 100, 2] two longer ones."""

RejectReason = Literal["no_read", "not_found", "failed", "expired", "recalled"]
REJECT_REASONS: tuple[RejectReason, ...] = (
    "no_read",
    "not_found",
    "failed",
    "expired",
    "recalled",
)


class GpioConfig(_Section):
    """GPIO feedback and conveyor I/O through gpiozero (BCM pin numbers; unset pins are unused)."""

    good_read: int | None = Field(None, ge=0, le=27, description="BCM pin of the good-read LED")
    no_read: int | None = Field(
        None, ge=0, le=27, description="BCM pin of the no-read LED (also blinks on alerts)"
    )
    buzzer: int | None = Field(None, ge=0, le=27, description="BCM pin of an active buzzer")
    trigger_input: int | None = Field(
        None,
        ge=0,
        le=27,
        description="BCM pin of the photo-eye; opens a read window on every camera with "
        "trigger = gpio",
    )
    reject_output: int | None = Field(
        None, ge=0, le=27, description="BCM pin pulsed to reject an item (conveyor gate, pusher)"
    )
    session_button: int | None = Field(
        None,
        ge=0,
        le=27,
        description="BCM pin of a push button: a short press starts or ends a session, a long "
        "press starts a new one",
    )
    pin_factory: Literal["auto", "lgpio", "rpigpio", "native", "mock"] = Field(
        "auto",
        description="gpiozero pin library; auto picks the best installed (lgpio on Pi OS "
        "Bookworm); mock runs without GPIO hardware",
    )
    outputs_active_high: bool = Field(
        True, description="LEDs and buzzer are on when their pin is high (false: wired to 3V3)"
    )
    reject_active_high: bool = Field(
        True, description="The reject output is on when high (false for active-low relay boards)"
    )
    good_read_led_ms: int = Field(200, ge=1, le=10_000, description="Good-read LED on time")
    no_read_led_ms: int = Field(1000, ge=1, le=10_000, description="No-read LED on time")
    good_read_beep: BeepPattern = Field(
        (60, 0, 1), description="Buzzer after a good read: [on ms, off ms, repetitions]"
    )
    no_read_beep: BeepPattern = Field(
        (150, 100, 2), description="Buzzer after a no-read: [on ms, off ms, repetitions]"
    )
    alert_beep: BeepPattern = Field(
        (400, 150, 3),
        description="Buzzer (and no-read LED) for an expired or recalled item: "
        "[on ms, off ms, repetitions]",
    )
    trigger_pull_up: bool = Field(
        True,
        description="Pull the photo-eye input up and trigger on low (NPN/sinking sensors, "
        "dry contacts); false: pull down and trigger on high (PNP through an optocoupler)",
    )
    trigger_debounce_ms: int = Field(
        20,
        ge=0,
        le=10_000,
        description="A photo-eye activation counts only after this long without any edge: "
        "the chatter at both ends of an item opens one read window",
    )
    button_pull_up: bool = Field(True, description="The session button connects its pin to GND")
    button_debounce_ms: int = Field(
        50, ge=0, le=1000, description="Presses shorter than this are contact bounce"
    )
    long_press_s: float = Field(
        2.0, gt=0, le=30, description="Holding the button this long starts a new session"
    )
    reject_on: list[RejectReason] = Field(
        default_factory=lambda: list(REJECT_REASONS),
        description="Which outcomes pulse the reject output",
    )
    reject_pulse_ms: int = Field(200, ge=1, le=10_000, description="Reject output pulse length")
    reject_delay_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="Belt travel time to the gate: from the photo-eye trigger (cameras with "
        "trigger = gpio), else from the read, to the pulse",
    )
    reject_deadline_ms: int = Field(
        3000,
        ge=0,
        le=120_000,
        description="A reject due longer ago than this is skipped and counted as missed "
        "(the item has passed the gate)",
    )

    @field_validator("good_read_beep", "no_read_beep", "alert_beep")
    @classmethod
    def _beep_pattern(cls, value: BeepPattern) -> BeepPattern:
        on_ms, off_ms, count = value
        if not (1 <= on_ms <= 10_000 and 0 <= off_ms <= 10_000 and 0 <= count <= 20):
            raise ValueError(
                f"beep pattern {list(value)!r}: expected [on ms 1-10000, off ms 0-10000, "
                "repetitions 0-20] (repetitions 0 is silent)"
            )
        return value

    @model_validator(mode="after")
    def _distinct_pins(self) -> GpioConfig:
        seen: dict[int, str] = {}
        for name in self.pin_names:
            pin = getattr(self, name)
            if pin is None:
                continue
            if pin in seen:
                raise ValueError(
                    f"GPIO{pin} is given to both {seen[pin]} and {name}; each function needs "
                    "its own pin"
                )
            seen[pin] = name
        return self

    @property
    def pin_names(self) -> tuple[str, ...]:
        return (
            "good_read",
            "no_read",
            "buzzer",
            "trigger_input",
            "reject_output",
            "session_button",
        )

    @property
    def in_use(self) -> bool:
        """True when any pin is configured (else the daemon does not touch GPIO)."""
        return any(getattr(self, name) is not None for name in self.pin_names)


class ChecksConfig(_Section):
    expiry: bool = Field(True, description="Flag items whose AI 17 date is before today")
    recall_list: Path | None = Field(
        None,
        description="CSV with the header gtin,batch: a batch recalls that batch (AI 10) of the "
        "GTIN, an empty batch every batch; read at start (restart after updating it)",
    )


class Gs1Config(_Section):
    gs_substitutes: list[str] = Field(
        default_factory=list, description="Visible stand-ins for GS that scanners send"
    )


CaptureTypeName = Literal["BARCODE", "IMAGE", "MANUAL"]
TerminalStatusName = Literal["COMPLETED", "NOT_FOUND", "FAILED"]


def _live_types() -> list[CaptureTypeName]:
    return ["BARCODE", "MANUAL"]


def _sold_statuses() -> list[TerminalStatusName]:
    return ["COMPLETED", "NOT_FOUND"]


class OutputFilter(_Section):
    """Which captures an output hands on (each list empty = any)."""

    capture_types: list[CaptureTypeName] = Field(
        default_factory=_live_types,
        description="Capture types handed on (IMAGE: photos and no-read frames)",
    )
    statuses: list[TerminalStatusName] = Field(
        default_factory=_sold_statuses,
        description="Terminal statuses handed on (FAILED: invalid GS1 data, bad check digit)",
    )
    sources: list[str] = Field(
        default_factory=list, description="Source names handed on; empty: every source"
    )


class MatchRules(_Section):
    """Industrial match code: a read must pass every rule given (none given: any read passes)."""

    symbologies: list[str] = Field(
        default_factory=list,
        description="Accepted symbologies: names (EAN13, DataMatrix, QRCode, Code128, ...) or "
        "AIM identifiers (']E0', or ']E' for any EAN/UPC); empty: any",
    )
    kinds: list[Literal["gtin", "gs1", "digital_link", "url", "text"]] = Field(
        default_factory=list, description="Accepted data formats; empty: any"
    )
    gtin_prefixes: list[str] = Field(
        default_factory=list,
        description="The GTIN must start with one of these (compared with the GTIN-14 and its "
        "13/12-digit forms, so '400' matches EAN-13 400…); empty: any, even no GTIN",
    )
    pattern: str = Field(
        "", description="Regular expression the whole raw value must match; '' = any"
    )
    require_ais: list[str] = Field(
        default_factory=list,
        description="GS1 Application Identifiers the read must carry, e.g. ['17'] for an expiry",
    )
    on_mismatch: Literal["reject", "skip"] = Field(
        "reject",
        description="reject: pulse the reject output and queue an event; skip: just do not "
        "hand the read on",
    )
    event_topic: Literal["alerts", "noreads", "none"] = Field(
        "alerts", description="MQTT topic of the event a rejected read queues (none: no event)"
    )

    @model_validator(mode="after")
    def _valid_rules(self) -> MatchRules:
        from scanstation.outputs.match import compile_rules

        compile_rules(self)  # raises ValueError naming the bad rule
        return self


class _OutputBase(_Section):
    name: str = Field(
        "",
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="Output name (default: its type); unique; a webhook's queued events are "
        "kept under it, so renaming one strands what it had queued",
    )
    enabled: bool = Field(True, description="false: configured but not used")
    filter: OutputFilter = Field(default_factory=OutputFilter)
    match: MatchRules = Field(default_factory=MatchRules)
    mode: Literal["template", "gtin", "hri"] = Field(
        "template",
        description="template: the format below; gtin: only the item number (POS); "
        "hri: GS1 human-readable (01)…(17)…(10)…",
    )
    format: str = Field(
        "{raw}",
        description="Template: {raw} {gtin} {gtin13} {item} {ai[10]} {hri} {symbology} "
        "{symbology_identifier} {source} {status} {public_id} {product_name}; {{ }} for braces",
    )
    gtin_digits: Literal[8, 12, 13, 14] | None = Field(
        None,
        description="gtin mode: leading zeros of the GTIN-14 dropped down to this many digits "
        "(unset: its natural length: 8, 12, 13 or 14)",
    )
    no_gtin: Literal["raw", "skip"] = Field(
        "raw", description="gtin and hri modes, for a read without a GTIN: type it as read, or skip"
    )
    prefix: str = Field("", description="Text sent before every read")
    suffix: str = Field("", description="Text sent after every read (before the terminator)")
    aim_prefix: bool = Field(
        False, description="Send the AIM symbology identifier (]E0, ]d2, …) first"
    )
    max_age_ms: int = Field(
        3000,
        ge=0,
        description="Keyboard and serial: a read still unsent this long after its capture was "
        "committed (device missing, port closed, a backlog) is dropped, never sent late "
        "(0: no limit)",
    )

    @field_validator("format")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        from scanstation.outputs.format import compile_template

        compile_template(value)  # raises FormatError (a ValueError) naming the bad field
        return value


class KeyboardGadgetOutputConfig(_OutputBase):
    """Types every read into the host (a POS) as a USB keyboard: a Pi in USB device mode."""

    type: Literal["keyboard_gadget"]
    device: str = Field(
        "/dev/hidg0", description="HID gadget device (firmware-config/usb-gadget.sh)"
    )
    layout: Literal["us", "uk", "de", "fr", "es", "it"] = Field(
        "us", description="Keyboard layout the host (the POS) is set to"
    )
    gs: Literal["ctrl", "alt", "text", "drop"] = Field(
        "ctrl",
        description="How GS (ASCII 29) is typed: ctrl = Ctrl+] (the key right of P), alt = "
        "Alt+0029, text = gs_text, drop = not at all",
    )
    gs_text: str = Field("", description="With gs = text: what is typed in place of GS")
    terminator: Literal["enter", "tab", "none"] = Field(
        "enter", description="Key pressed after every read"
    )
    write_timeout_ms: int = Field(
        1000,
        ge=1,
        description="The host must take each report within this long (else it is not listening)",
    )

    @model_validator(mode="after")
    def _gs_text_given(self) -> KeyboardGadgetOutputConfig:
        if self.gs == "text" and not self.gs_text:
            raise ValueError("gs = 'text' needs gs_text, e.g. gs_text = '<GS>'")
        return self


class SerialOutputConfig(_OutputBase):
    """Writes every read as a line to a serial port (RS-232, USB-CDC), e.g. to a PLC."""

    type: Literal["serial"]
    port: str = Field(..., min_length=1, description="e.g. /dev/ttyUSB0 or /dev/serial/by-id/…")
    baud: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["none", "even", "odd"] = "none"
    stopbits: Literal[1, 2] = 1
    terminator: str = Field("\r\n", description="Sent after every read")
    encoding: Literal["utf-8", "latin-1", "cp1252", "ascii"] = Field(
        "utf-8", description="Characters the encoding lacks are sent as '?'"
    )
    reconnect_s: float = Field(2.0, gt=0, description="Pause before reopening a lost port")


class WebhookOutputConfig(_OutputBase):
    """POSTs every capture event as JSON to a URL, from the durable outbox (retried until 2xx)."""

    type: Literal["webhook"]
    url: str = Field(..., pattern=r"^https?://\S+$", description="http(s) URL to POST to")
    format: str = Field(
        "",
        description='Optional template; when set, the JSON carries its result as "text"',
    )
    filter: OutputFilter = Field(
        default_factory=lambda: OutputFilter(statuses=["COMPLETED", "NOT_FOUND", "FAILED"]),
        description="Which captures are posted",
    )
    hmac_secret_file: Path | None = Field(
        None,
        description="File holding a shared secret: every POST then carries "
        "X-Scanstation-Signature = sha256=HMAC(secret, timestamp + '.' + body)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers, e.g. an Authorization"
    )
    timeout_s: float = Field(10.0, gt=0, description="One request's time limit")
    retry_initial_s: float = Field(1.0, gt=0, description="First pause after a failed POST")
    retry_max_s: float = Field(300.0, gt=0, description="Longest pause between retries")
    dead_letter_after: int = Field(
        5,
        ge=1,
        description="A capture refused this many times in a row with a 4xx (not 408/429) "
        "goes to the dead-letter table instead of blocking the queue",
    )
    verify_tls: bool = Field(True, description="Check the server's certificate")


OutputConfig = Annotated[
    KeyboardGadgetOutputConfig | SerialOutputConfig | WebhookOutputConfig,
    Field(discriminator="type"),
]
"""One ``[[outputs]]`` entry: keyboard_gadget | serial | webhook."""


def output_name(
    output: KeyboardGadgetOutputConfig | SerialOutputConfig | WebhookOutputConfig,
) -> str:
    """An output's name: ``name``, else its type (``webhook``)."""
    return output.name or output.type


def unique_output_names(outputs: list[Any]) -> list[Any]:
    """Validator for ``Config.outputs``: names (defaulting to the type) must be unique."""
    seen: set[str] = set()
    for output in outputs:
        name = output_name(output)
        if name in seen:
            raise ValueError(
                f"two outputs are named {name!r}; give each [[outputs]] entry its own name "
                "(an unnamed output is named after its type)"
            )
        seen.add(name)
    return outputs


class Config(_Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    session: SessionConfig = Field(default_factory=SessionConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    qr_analysis: QrAnalysisConfig = Field(default_factory=QrAnalysisConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    gs1: Gs1Config = Field(default_factory=Gs1Config)
    outputs: list[OutputConfig] = Field(default_factory=list)
    match: MatchRules = Field(
        default_factory=MatchRules, description="Global match rules for every output"
    )

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for source in sources:
            if source.name in seen:
                raise ValueError(f"two sources are named {source.name!r}; names must be unique")
            seen.add(source.name)
        return sources

    @field_validator("outputs")
    @classmethod
    def _unique_output_names(cls, outputs: list[Any]) -> list[Any]:
        return unique_output_names(outputs)

    @property
    def api_keys_path(self) -> Path:
        return self.http.api_keys_file or self.storage.path / "api_keys.json"

    @property
    def db_path(self) -> Path:
        return self.storage.path / "scanstation.db"

    @property
    def images_path(self) -> Path:
        return self.storage.path / "images"


# Sections that take environment overrides (tables of scalars; arrays of tables do not).
_ENV_SECTIONS = sorted(
    (name for name, f in Config.model_fields.items() if name not in ("sources", "outputs")),
    key=len,
    reverse=True,
)


def _env_value(text: str) -> Any:
    """Read an environment value as a TOML value when it is one (1, true, [..]), else text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply SCANSTATION_<SECTION>_<KEY>=value to `data`; return the names applied."""
    applied = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _ENV_SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"environment variable {name}: no section matches; expected "
                f"SCANSTATION_<SECTION>_<KEY> with SECTION one of {', '.join(sorted(_ENV_SECTIONS))}"  # noqa: E501
            )
        key = rest[len(section) + 1 :]
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"environment variable {name}: [{section}] is not a table")
        table[key] = _env_value(text)
        applied.append(name)
    return applied


def _format_error(error: Any, origin: str) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{loc}'"
    if error["type"] == "missing":
        return f"{origin}: missing required key '{loc}'"
    if error["type"] == "union_tag_invalid":
        return f"{origin}: '{loc}': {error['msg']}"
    return f"{origin}: '{loc}': {error['msg']} (got {error.get('input')!r})"


def parse_config(
    data: dict[str, Any], origin: str = "<defaults>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a TOML-shaped dict (plus environment overrides) into a Config."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    applied = apply_env_overrides(data, os.environ if environ is None else environ)
    where = origin + (f" (with {', '.join(applied)})" if applied else "")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_error(e, where) for e in exc.errors())) from None


def find_config_file(explicit: str | Path | None) -> Path | None:
    """The config file to read: --config, $SCANSTATION_CONFIG, then the SPEC §3 defaults."""
    if explicit is not None:
        return Path(explicit)
    if env := os.environ.get("SCANSTATION_CONFIG"):
        return Path(env)
    return next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the config file (or built-in defaults when none exists) and validate it."""
    file = find_config_file(path)
    if file is None:
        return parse_config({}, "<built-in defaults>", environ)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte {exc.start}); a config file is TOML in UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, str(file), environ)
