"""What every config section shares: strict models (unknown keys are errors) and ConfigError."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
)

DEFAULT_CONFIG_PATHS = (Path("/etc/scanstation/scanstation.toml"), Path("scanstation.toml"))


ENV_PREFIX = "SCANSTATION_"


NOT_CONFIG_ENV = frozenset({"SCANSTATION_CONFIG", "SCANSTATION_LOG_LEVEL"})
"""Variables of the command line itself, not overrides of config keys."""


class ConfigError(Exception):
    """A configuration problem; the message names the key, the file and what was expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
