"""What every config section shares: strict models (unknown keys are errors) and ConfigError."""

from __future__ import annotations

import difflib
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
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


@cache
def keyboard_layout_names() -> dict[str, str]:
    """Keyboard layout names as xkb spells them (and the aliases) -> the layout they name.

    Read from the list shipped beside the layout table (scripts/gen_keyboard_layouts.py).
    """
    text = files("scanstation.data").joinpath("keyboard_layouts.txt").read_text("utf-8")
    names: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            alias, _, target = line.partition("=")
            names[alias] = target or alias
    return names


def _known_layout(name: str) -> str:
    names = keyboard_layout_names()
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "e.g. us, de, fr, ch(fr), us(intl)"
        raise ValueError(
            f"unknown keyboard layout {name!r}; expected an xkb layout name as in "
            f"docs/scanners.md ({hint})"
        )
    return name


KeyboardLayout = Annotated[str, AfterValidator(_known_layout)]
"""A keyboard layout as xkb spells it (``de``, ``ch(fr)``, ``us(intl)``) or an alias (uk)."""
