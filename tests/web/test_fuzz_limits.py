"""Fuzzing the input limits: deep and wide JSON, long headers, chunked bodies.

The JSON parser every outside input goes through (jsonlimits), MQTT command parsing, and the
real HTTP server (make_app behind app.http_server, so the connection limits are on) over a
real Store. No input may raise anything but the limit error, get a 500, or hang.

Budget: SCANSTATION_FUZZ_SCALE (default 1) multiplies max_examples (bounded for CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanstation.app import http_server
from scanstation.config import parse_config
from scanstation.jsonlimits import MAX_DEPTH, JsonLimitError, loads_limited, nesting_depth
from scanstation.pipeline import Pipeline
from scanstation.publish.commands import COMMANDS, CommandAuth, CommandError, parse_command
from scanstation.store import Store
from scanstation.web.auth import ApiKeyStore
from scanstation.web.context import API_BASE, Services
from scanstation.web.server import make_app

SCALE = float(os.environ.get("SCANSTATION_FUZZ_SCALE", "1"))
OPEN = CommandAuth(exempt=frozenset(COMMANDS))


def _examples(n: int) -> int:
    return max(1, int(n * SCALE))


# Documents that are deep, wide, or both, in text form (with brackets inside strings too).
leaf = st.one_of(st.integers(), st.text(alphabet='[]{}"\\ab', max_size=8), st.none())
deep_text = st.builds(
    lambda depth, kind, inner: (
        ("[" * depth + inner + "]" * depth) if kind else ('{"a":' * depth + inner + "}" * depth)
    ),
    st.integers(0, 4000),
    st.booleans(),
    leaf.map(json.dumps),
)
wide_text = st.builds(
    lambda n, item: "[" + ",".join([item] * n) + "]", st.integers(0, 5000), leaf.map(json.dumps)
)
junk_text = st.text(alphabet='[]{}",:0123456789 \\truefalsn', max_size=300)
documents = st.one_of(deep_text, wide_text, junk_text)


@settings(max_examples=_examples(300), deadline=None)
@given(documents)
def test_loads_limited_raises_only_its_own_error_and_agrees_with_json(text: str) -> None:
    error: JsonLimitError | None = None
    try:
        value = loads_limited(text)
    except JsonLimitError as exc:
        error = exc
    if error is None:
        assert value == json.loads(text)
    else:
        assert error.kind in ("too_large", "too_deep", "invalid")
        assert (error.kind == "too_deep") == (nesting_depth(text) > MAX_DEPTH)


@settings(max_examples=_examples(200), deadline=None)
@given(name=st.sampled_from(COMMANDS), text=documents)
def test_mqtt_command_parsing_answers_every_payload_with_a_command_or_an_error(
    name: str, text: str
) -> None:
    payload = ('{"metadata": ' + text + "}") if text.startswith("[") else text
    code = "ok"
    try:
        parse_command(name, payload.encode(), None, None, auth=OPEN)
    except CommandError as exc:
        code = exc.code
    assert code in ("ok", "bad_request", "invalid", "payload_too_large")


# ---- over real HTTP ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    config = parse_config(
        {"storage": {"path": str(tmp_path / "s")}, "http": {"max_json_bytes": 65536}},
        "<fuzz>",
        environ={},
    )
    async with Store(config.db_path) as store:
        pipeline = Pipeline(store, config)
        task = asyncio.create_task(pipeline.run())
        key = ApiKeyStore(config.api_keys_path).create("fuzz")
        app = make_app(Services(config, store, pipeline, pipeline.bus))
        async with http_server(app, "127.0.0.1", _free_port(), max_connections=32) as url:
            yield url, key
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


ROUTES = ("/auth/login", f"{API_BASE}/sessions", f"{API_BASE}/captures")


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_http_inputs_at_the_limits_get_4xx_never_500(server: tuple[str, str]) -> None:
    url, key = server
    bodies = st.one_of(
        documents.map(str.encode),
        st.integers(60_000, 200_000).map(lambda n: b'{"metadata": {"k": "' + b"v" * n + b'"}}'),
    )
    cases = st.tuples(
        st.sampled_from(ROUTES),
        bodies,
        st.sampled_from([0, 1, 7, 4096]),  # 0: Content-Length, else chunk size
        st.integers(0, 12_000),  # length of an extra header
    )

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:

        @settings(
            max_examples=_examples(60),
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(cases)
        def run(case: tuple[str, bytes, int, int]) -> None:
            pending.append(case)

        pending: list[tuple[str, bytes, int, int]] = []
        run()  # draws the cases; the requests go out below, on this loop
        for route, body, chunk, header in pending:
            headers = {"Content-Type": "application/json", "X-API-Key": key}
            if header:
                headers["X-Filler"] = "f" * header
            data: Any = _chunks(body, chunk) if chunk else body
            async with http.post(url + route, data=data, headers=headers) as resp:
                text = await resp.text()
                assert resp.status < 500, (route, resp.status, text[:300])
                if resp.status >= 400 and resp.status != 431 and header <= 8190:
                    assert json.loads(text)["error"]["message"]
        async with http.get(url + "/healthz") as resp:
            assert resp.status == 200
    assert len(pending) == _examples(60)
