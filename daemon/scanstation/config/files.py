"""The files a valid config refers to, checked before the daemon starts (and by --check-config).

A config can be valid TOML with every key right and still name a recall list, a CA bundle or a
password file that is not there (or not readable, or not what it should be). Each problem is
reported with its dotted key and the path, e.g. ``checks.recall_list =
'/etc/scanstation/recalls.csv': no such file (expected a CSV with the header gtin,batch)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from scanstation.config.loader import Config


def _unreadable(path: Path) -> str:
    """Why `path` cannot be read as a file ("" when it can)."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder, not a file"
    if not os.access(path, os.R_OK):
        return "not readable by this user (check its owner and mode)"
    return ""


def _referenced(config: Config) -> Iterator[tuple[str, Path, str]]:
    """(dotted key, path, what it should be) for every file the config names."""
    if config.checks.recall_list is not None:
        yield "checks.recall_list", config.checks.recall_list, "a CSV with the header gtin,batch"
    if config.classifier.enabled:
        if config.classifier.model is not None:
            yield "classifier.model", config.classifier.model, "a .tflite model"
        if config.classifier.labels is not None:
            yield "classifier.labels", config.classifier.labels, "a labels file, one per line"
    mqtt = config.mqtt
    if mqtt.host:
        if mqtt.password_file is not None:
            yield "mqtt.password_file", mqtt.password_file, "a file holding the password"
        if mqtt.command_token_file is not None:
            yield "mqtt.command_token_file", mqtt.command_token_file, "a file holding the token"
        if mqtt.tls is not None:
            if mqtt.tls.ca is not None:
                yield "mqtt.tls.ca", mqtt.tls.ca, "the PEM CA bundle that signed the broker"
            if mqtt.tls.cert is not None:
                yield "mqtt.tls.cert", mqtt.tls.cert, "this station's PEM client certificate"
            if mqtt.tls.key is not None:
                yield "mqtt.tls.key", mqtt.tls.key, "the PEM private key of mqtt.tls.cert"
    for i, output in enumerate(config.outputs):
        secret = getattr(output, "hmac_secret_file", None)
        if secret is not None:
            yield f"outputs[{i}].hmac_secret_file", secret, "a file holding the shared secret"
    for i, source in enumerate(config.sources):
        file = getattr(source, "file", None)
        if source.enabled and file is not None:
            yield f"sources[{i}].file", file, "a text file of raw values, one per line"


def file_problems(config: Config) -> list[str]:
    """Every referenced file that is missing, unreadable or not what its key expects."""
    problems = []
    for key, path, expected in _referenced(config):
        why = _unreadable(path)
        if why:
            problems.append(f"{key} = '{path}': {why} (expected {expected})")
    if not problems:
        problems.extend(_content_problems(config))
    return problems


def _content_problems(config: Config) -> list[str]:
    """The files that exist but cannot be used (a recall list that does not load); the TLS
    files are loaded by the MQTT link's own ``tls_context``, which names them too."""
    from scanstation.barcode.interpret import InterpretError, RecallList

    problems = []
    if config.checks.recall_list is not None:
        try:
            RecallList.load(config.checks.recall_list)
        except InterpretError as exc:
            problems.append(f"checks.recall_list: {exc}")
    return problems
