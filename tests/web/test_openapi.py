"""GET /scanner/api/v1/openapi.json: generated from the handlers' models, complete, and true
of the running station (schemathesis against a real server on a free port, bounded).

Budget: SCHEMATHESIS_MAX_EXAMPLES (default 15 per operation) and SCHEMATHESIS_MAX_TIME
(default 60 s for the whole run).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from scanstation.config import Config
from scanstation.web import passwords
from scanstation.web.context import API_BASE
from scanstation.web.models import CaptureCreate, CaptureOut, ErrorBody
from scanstation.web.ui_auth import open_path
from station import running_station

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
MAX_TIME = int(os.environ.get("SCHEMATHESIS_MAX_TIME", "60"))
STREAMS = r"/(events|sources/\{name\}/stream\.mjpg)$"
"""Endless streams: documented, not fuzzed (a case would never finish)."""


async def document(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get(f"{API_BASE}/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return dict(await resp.json())


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for resource in app.router.resources():
        path = resource.canonical
        if path.startswith((API_BASE, "/auth/")) or path == "/healthz":
            found |= {(r.method.lower(), path) for r in resource if r.method not in ("HEAD", "*")}
    return found


async def test_openapi_documents_every_route_with_auth_and_errors(
    client: TestClient[Any, Any],
) -> None:
    doc = await document(client)
    assert doc["openapi"] == "3.1.0"
    listed = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert listed == served_routes(client.app)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            is_open = open_path(path, method.upper())
            assert (op["security"] == []) is is_open, (method, path)
            statuses = set(op["responses"])
            if not is_open:
                assert "401" in statuses, (method, path)
            for status, answer in op["responses"].items():
                if int(status) >= 400 and path != "/healthz":  # 503: degraded health
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    schemes = doc["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {
        "X-API-Key",
        "sessionid",
        "X-CSRF-Token",
        "X-CSRFToken",
    }


async def test_openapi_schemas_are_the_models_the_handlers_validate_with(
    client: TestClient[Any, Any],
) -> None:
    doc = await document(client)
    schemas = doc["components"]["schemas"]
    ref = "#/components/schemas/{model}"
    assert schemas["CaptureCreate"] == CaptureCreate.model_json_schema(ref_template=ref)
    out = CaptureOut.model_json_schema(ref_template=ref, mode="serialization")
    nested = out.pop("$defs")
    assert schemas["CaptureOut"] == out
    assert {name: schemas[name] for name in nested} == nested
    assert schemas["ErrorBody"]["properties"]["error"] == {"$ref": ref.format(model="ErrorDetail")}
    create = doc["paths"][f"{API_BASE}/captures"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": ref.format(model="CaptureCreate")
    }
    fields = schemas["CaptureCreate"]
    assert fields["required"] == ["session_public_id", "capture_type", "raw_value"]
    assert fields["properties"]["capture_type"]["pattern"] == "^(BARCODE|IMAGE|MANUAL)$"
    assert (
        fields["properties"]["raw_value"]["minLength"],
        fields["properties"]["raw_value"]["maxLength"],
    ) == (1, 500)
    retry = doc["paths"][f"{API_BASE}/captures/{{id}}/retry"]["post"]
    (param,) = retry["parameters"]
    assert param["schema"]["pattern"] == (
        "^[23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]{22}$"
    )
    nullable = schemas["CaptureOut"]["properties"]["product_name"]
    assert {"type": "null"} in nullable["anyOf"]
    upload = doc["paths"][f"{API_BASE}/captures/upload-image"]["post"]["requestBody"]
    form = schemas[upload["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert form["properties"]["capture_type"]["pattern"] == "^(BARCODE|IMAGE)$"
    assert form["properties"]["image"]["format"] == "binary"


async def test_openapi_error_body_matches_a_real_error(client: TestClient[Any, Any]) -> None:
    resp = await client.post(f"{API_BASE}/captures/short/retry")
    assert resp.status == 422
    ErrorBody.model_validate(await resp.json())


@pytest.mark.timeout(MAX_TIME + 60)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    config: Config, tmp_path: Path
) -> None:
    """schemathesis run against a real station: every operation, positive and negative data,
    at most MAX_EXAMPLES cases each and MAX_TIME seconds in all."""
    cli = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    assert Path(cli).exists(), "schemathesis is in the test extra: pip install -e '.[test]'"
    passwords.set_password(config, "schemathesis cannot guess this")
    async with running_station(config, mqtt=False, http="tcp") as station:
        headers = {"X-API-Key": station.api_key}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{station.url}{API_BASE}/sessions", json={}) as resp:
                assert resp.status == 201
            async with http.get(f"{station.url}{API_BASE}/openapi.json") as resp:
                doc = await resp.json()
        spec = tmp_path / "openapi.json"
        spec.write_text(json.dumps(doc))
        report = tmp_path / "report.json"
        proc = await asyncio.create_subprocess_exec(
            cli,
            "run",
            str(spec),
            "--url",
            station.url,
            "--header",
            f"X-API-Key: {station.api_key}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_TIME),
            "--workers",
            "1",
            "--seed",
            "18",
            "--request-timeout",
            "10",
            "--exclude-path-regex",
            STREAMS,
            "--suppress-health-check",
            "all",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
            cwd=tmp_path,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), MAX_TIME + 45)
        text = out.decode(errors="replace")
        print(text[-4000:])
        assert proc.returncode == 0, text[-6000:]
        # It did test the API, not an empty document.
        assert "captures" in text
