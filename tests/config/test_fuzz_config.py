"""Fuzzing the config loader: any TOML, any values under real keys, any environment override.

The loader must answer every input with a Config or a ConfigError naming what is wrong (the
CLI turns that into exit 2), never with another exception.

Budget: SCANSTATION_FUZZ_SCALE (default 1) multiplies every test's max_examples.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from scanstation.config import Config, ConfigError, load_config, parse_config

SCALE = float(os.environ.get("SCANSTATION_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=1000,
        suppress_health_check=[HealthCheck.too_slow],
    )


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (model := _model_of(arg)) is not None:
            return model
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return sorted(model.model_fields)


# The real sections and their real keys, so that values reach the validators.
SECTIONS: dict[str, list[str]] = {}
for _name, _field in Config.model_fields.items():
    _sub = _model_of(_field.annotation)
    if _sub is not None and _name not in ("sources", "outputs"):
        SECTIONS[_name] = _keys(_sub)
SOURCE_KEYS = sorted(
    {
        key
        for model in ("CameraSourceConfig", "HidSourceConfig", "SerialSourceConfig")
        for key in _keys(getattr(__import__("scanstation.config").config, model))
    }
)

scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["auto", "us", "camera", "hid", "0", "127.0.0.1:8080", "Europe/Paris", "/dev/null", "x:1"]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def config_dicts(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        keys = st.sampled_from(SECTIONS[section]) | st.text(max_size=6)
        data[section] = draw(st.dictionaries(keys, values, max_size=4))
    if draw(st.booleans()):
        source_type = st.sampled_from(["camera", "hid", "serial", "stdin", "replay", "x"])
        data["sources"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"type": source_type, "name": st.sampled_from(["cam0", "gun", "", "a b"])},
                    optional={k: values for k in SOURCE_KEYS if k not in ("type", "name")},
                ),
                max_size=3,
            )
        )
    if draw(st.booleans()):
        data[draw(st.text(max_size=6))] = draw(values)
    return data


def load_or_refuse(call: Any) -> Config | None:
    """Run the loader: a Config, or None when it refused with a ConfigError."""
    try:
        config = call()
    except ConfigError as exc:
        refusal = str(exc)
    else:
        assert isinstance(config, Config)
        return config
    assert refusal
    return None


@given(config_dicts())
@fuzz(400)
def test_fuzz_parse_config_answers_config_or_config_error(data: dict[str, Any]) -> None:
    load_or_refuse(lambda: parse_config(data, "fuzz.toml", environ={}))


@given(
    st.dictionaries(
        st.builds(
            lambda section, key: f"SCANSTATION_{section}_{key}".upper(),
            st.sampled_from([*SECTIONS, "nope", ""]),
            st.sampled_from([k for keys in SECTIONS.values() for k in keys]) | st.text(max_size=5),
        ),
        st.text(max_size=12) | st.sampled_from(["1", "true", "[1, 2]", "{a = 1}", "1e999", '"x"']),
        max_size=3,
    )
)
@fuzz(300)
def test_fuzz_env_overrides_answer_config_or_config_error(environ: dict[str, str]) -> None:
    load_or_refuse(lambda: parse_config({}, "fuzz.toml", environ=environ))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: dict[str, Any]) -> str:
    lines = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {
        k: v
        for k, v in data.items()
        if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
    }
    for key, value in data.items():
        if key not in tables and key not in arrays:
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    for key, table in tables.items():
        lines.append(f"[{json.dumps(key)}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    for key, items in arrays.items():
        for item in items:
            lines.append(f"[[{json.dumps(key)}]]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


SAMPLE = """\
[device]
id = "lane-01"
[storage]
path = "/var/lib/scanstation"
[http]
bind = "127.0.0.1:8080"
[mqtt]
host = "broker.example.com"
port = 8883
topic_prefix = "scanstation"
[qr_analysis]
allow_private_networks = false
[[sources]]
type = "camera"
name = "cam0"
[[outputs]]
type = "webhook"
url = "https://wms.example.com/scans"
"""


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    text = bytearray(SAMPLE.encode())
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        byte = draw(st.sampled_from(b'[]="\n.#\\\x00\xff0a') | st.integers(0, 255))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            text[position:position] = bytes([byte])
        elif action == "delete":
            del text[position : position + 1]
        else:
            text[position : position + 1] = bytes([byte])
    return bytes(text)


@given(
    config_dicts().map(lambda d: to_toml(d).encode("utf-8", "surrogatepass"))
    | mutated_sample()
    | st.binary(max_size=200)
)
@fuzz(500)
def test_fuzz_load_config_answers_config_or_config_error(document: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scanstation.toml"
        path.write_bytes(document)
        load_or_refuse(lambda: load_config(path, environ={}))


def test_load_config_sample_is_valid() -> None:
    """The fuzzer's seed is the SPEC §4 example, which must load."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scanstation.toml"
        path.write_text(SAMPLE)
        config = load_config(path, environ={})
    assert (config.device.id, config.qr_analysis.allow_private_networks) == ("lane-01", False)


def test_load_config_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    """Found by the fuzzer: a Latin-1 file raised UnicodeDecodeError instead of ConfigError."""
    path = tmp_path / "scanstation.toml"
    path.write_bytes(b'[device]\nsite = "Caf\xe9"\n')
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path, environ={})
