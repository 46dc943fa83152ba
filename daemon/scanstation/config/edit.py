"""The config file edited from the UI: the form generated from the ``Config`` model, changes
merged into the TOML with its comments kept (tomlkit), validated by the same model as the
file, shown as a diff, written atomically with the previous file kept for a rollback.

A change is a dotted key (``device.site``, ``session.idle_timeout_s``) and its new value;
tables of tables (``sources``, ``outputs``, ``match``) are edited whole, as JSON.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from scanstation.config.base import ConfigError
from scanstation.config.loader import Config, parse_config

PREVIOUS_FILE = "config-previous.toml"
"""In the storage folder: the file as it was before the last apply (what rollback restores)."""

WHOLE = ("sources", "outputs", "match")
"""Sections edited whole, as JSON (lists of tables, nested rules)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated change of the config file, not yet written."""

    old_text: str
    new_text: str
    config: Config

    @property
    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old_text.splitlines(keepends=True),
                self.new_text.splitlines(keepends=True),
                "before",
                "after",
            )
        )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def previous_path(config: Config) -> Path:
    return config.storage.path / PREVIOUS_FILE


# ---- the form ------------------------------------------------------------------------------


def _kind(annotation: Any) -> tuple[str, list[Any]]:
    """The input a field gets: bool, int, float, text, choice (with its choices), list, json."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _kind(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _kind(options[0])
        if all(get_origin(a) is Literal for a in options):
            return "choice", [v for a in options for v in get_args(a)]
        return "json", []
    if origin is Literal:
        return "choice", list(get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return ("list", []) if _kind(item)[0] in ("text", "int", "float") else ("json", [])
    if annotation is bool:
        return "bool", []
    if annotation is int:
        return "int", []
    if annotation is float:
        return "float", []
    if annotation in (str, Path):
        return "text", []
    return "json", []


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def form(config: Config) -> list[dict[str, Any]]:
    """Every section and key of the configuration with its kind, current value, default and
    the description the reference (docs/configuration.md) shows."""
    sections = []
    for name, field in Config.model_fields.items():
        value = getattr(config, name)
        if name in WHOLE or not isinstance(value, BaseModel):
            sections.append(
                {
                    "name": name,
                    "description": field.description or "",
                    "fields": [
                        {
                            "key": name,
                            "kind": "json",
                            "choices": [],
                            "value": _jsonable(value),
                            "description": field.description or "",
                        }
                    ],
                }
            )
            continue
        fields = []
        for key, sub in type(value).model_fields.items():
            kind, choices = _kind(sub.annotation)
            fields.append(
                {
                    "key": f"{name}.{key}",
                    "kind": kind,
                    "choices": choices,
                    "value": _jsonable(getattr(value, key)),
                    "description": sub.description or "",
                }
            )
        sections.append({"name": name, "description": field.description or "", "fields": fields})
    return sections


# ---- changes -------------------------------------------------------------------------------


def _toml_value(value: Any) -> Any:
    import tomlkit  # the settings page's, on first use: not resident in a daemon nobody edits

    return tomlkit.item(value) if not isinstance(value, str) else value


def plan(path: Path, changes: dict[str, Any], environ: dict[str, str] | None = None) -> Plan:
    """Merges ``changes`` into the file at ``path`` and validates the result (ConfigError
    naming the key otherwise). A value of None removes the key (back to its default)."""
    import tomlkit

    old_text = path.read_text(encoding="utf-8") if path.is_file() else ""
    try:
        doc = tomlkit.parse(old_text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    known = set(Config.model_fields)
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        if section not in known:
            raise ConfigError(f"'{dotted}': there is no section [{section}]")
        if not key:
            if section not in WHOLE:
                raise ConfigError(f"'{dotted}': name a key of [{section}]")
            if value is None:
                doc.pop(section, None)
            else:
                if section == "match":
                    doc[section] = tomlkit.item(value)
                else:
                    aot = tomlkit.aot()
                    for table in value:
                        aot.append(tomlkit.item(table))
                    doc[section] = aot
            continue
        table = doc.get(section)
        if table is None:
            table = tomlkit.table()
            doc[section] = table
        if value is None:
            table.pop(key, None)
        else:
            table[key] = _toml_value(value)
    new_text = tomlkit.dumps(doc)
    try:
        data = tomlkit.parse(new_text).unwrap()
    except tomlkit.exceptions.ParseError as exc:  # a value tomlkit could not write back
        raise ConfigError(f"the change does not make valid TOML: {exc}") from None
    config = parse_config(data, str(path), environ={} if environ is None else environ)
    return Plan(old_text, new_text, config)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".saving")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def apply(path: Path, change: Plan, keep: Path) -> None:
    """Writes the planned file; the file it replaces is kept at ``keep`` for a rollback."""
    if path.is_file() and path.read_text(encoding="utf-8") != change.old_text:
        raise ConfigError(
            f"{path} changed since the preview (edited by someone else); preview again"
        )
    keep.parent.mkdir(parents=True, exist_ok=True)
    _write(keep, change.old_text)
    with contextlib.suppress(OSError):
        os.chmod(keep, 0o600)
    _write(path, change.new_text)


def rollback_plan(path: Path, keep: Path) -> Plan:
    """The change that puts the kept previous file back (validated like any other)."""
    import tomlkit

    if not keep.is_file():
        raise ConfigError("there is no previous configuration to roll back to")
    old_text = path.read_text(encoding="utf-8") if path.is_file() else ""
    new_text = keep.read_text(encoding="utf-8")
    data = tomlkit.parse(new_text).unwrap()
    return Plan(old_text, new_text, parse_config(data, str(keep), environ={}))


def changed_sections(before: Config, after: Config) -> list[str]:
    """The sections whose values differ (what the restart affects)."""
    return [
        name
        for name in Config.model_fields
        if json.dumps(_jsonable(getattr(before, name)), sort_keys=True, default=str)
        != json.dumps(_jsonable(getattr(after, name)), sort_keys=True, default=str)
    ]
