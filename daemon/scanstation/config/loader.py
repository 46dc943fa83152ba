"""The whole ``Config``: the TOML file found and read, SCANSTATION_<SECTION>_<KEY> applied.

Unknown keys are errors (exit 2 naming the key and the file). Loaded once, passed down.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from scanstation.config.analysis import ClassifierConfig, QrAnalysisConfig
from scanstation.config.base import (
    DEFAULT_CONFIG_PATHS,
    ENV_PREFIX,
    NOT_CONFIG_ENV,
    ConfigError,
    Section,
)
from scanstation.config.collector import CollectorConfig
from scanstation.config.gpio import GpioConfig
from scanstation.config.industrial import (
    ModbusConfig,
    NoReadImagesConfig,
    ObjectWindowConfig,
    OpcUaConfig,
    QualityConfig,
)
from scanstation.config.network import HttpConfig, MqttConfig
from scanstation.config.outputs import (
    MatchRules,
    OutputConfig,
    unique_output_names,
)
from scanstation.config.sources import (
    SourceConfig,
)
from scanstation.config.station import (
    BackupConfig,
    ChecksConfig,
    DeviceConfig,
    Gs1Config,
    SessionConfig,
    StorageConfig,
)


class Config(Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    session: SessionConfig = Field(default_factory=SessionConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    qr_analysis: QrAnalysisConfig = Field(default_factory=QrAnalysisConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    collector: CollectorConfig = Field(
        default_factory=CollectorConfig,
        description="The fleet collector (`scanstation collector`); stations ignore it",
    )
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    gs1: Gs1Config = Field(default_factory=Gs1Config)
    outputs: list[OutputConfig] = Field(default_factory=list)
    match: MatchRules = Field(
        default_factory=MatchRules, description="Global match rules for every output"
    )
    modbus: ModbusConfig = Field(default_factory=ModbusConfig)
    opcua: OpcUaConfig = Field(default_factory=OpcUaConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    object_window: ObjectWindowConfig = Field(default_factory=ObjectWindowConfig)
    noread_images: NoReadImagesConfig = Field(default_factory=NoReadImagesConfig)

    @model_validator(mode="after")
    def _object_window_cameras(self) -> Config:
        window = self.object_window
        if not window.enabled:
            return self
        cameras = {s.name: s for s in self.sources if s.type == "camera" and s.enabled}
        if window.name in {s.name for s in self.sources}:
            raise ValueError(
                f"object_window.name {window.name!r} is also a source's name; names must be unique"
            )
        for name in window.cameras:
            camera = cameras.get(name)
            if camera is None:
                raise ValueError(
                    f"object_window.cameras entry {name!r}: no enabled camera source has this "
                    f"name (cameras: {', '.join(sorted(cameras)) or 'none'})"
                )
            if getattr(camera, "trigger", "") != "software":
                raise ValueError(
                    f"object_window.cameras entry {name!r} has trigger = "
                    f"{getattr(camera, 'trigger', '')!r}; cameras in an object window need "
                    "trigger = 'software' (the window triggers them)"
                )
        if window.trigger == "gpio" and self.gpio.trigger_input is None:
            raise ValueError(
                "object_window.trigger = 'gpio' needs the photo-eye's pin: set [gpio] "
                "trigger_input (BCM number), or use trigger = 'software'"
            )
        if not self.object_window_cameras:
            raise ValueError(
                "object_window is enabled but no camera source has trigger = 'software'"
            )
        return self

    @property
    def object_window_cameras(self) -> list[str]:
        """The cameras of the object window (configured, or every software-triggered one)."""
        window = self.object_window
        if window.cameras:
            return list(window.cameras)
        return [
            s.name
            for s in self.sources
            if s.type == "camera" and s.enabled and getattr(s, "trigger", "") == "software"
        ]

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
