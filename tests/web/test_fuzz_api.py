"""Fuzzing every HTTP endpoint: no input gets a 500, crashes the daemon or hangs a request.

The app is the real one (make_app) over a real Store on a temporary directory and a running
Pipeline. Every route the router knows is fuzzed, so endpoints added later are covered too:
path parameters (valid ids and junk), query strings, headers, JSON and non-JSON bodies,
multipart uploads (real images, mutated images, junk).

Budget: SCANSTATION_FUZZ_SCALE (default 1) multiplies max_examples; each example is one
request. After the run the daemon must still be healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from scanstation.config import Config, parse_config
from scanstation.pipeline import Pipeline
from scanstation.web.context import API_BASE
from station import running_station

SCALE = float(os.environ.get("SCANSTATION_FUZZ_SCALE", "1"))
IMAGES = Path(__file__).parents[1] / "data" / "images"
GTIN = "09506000134352"
STREAMING = ("text/event-stream", "multipart/x-mixed-replace")
REQUEST_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


class FakePreview:
    """A camera preview the way the camera source offers one: the newest JPEG frame."""

    def __init__(self) -> None:
        self.frame = small_jpeg()

    def latest_jpeg(self) -> bytes:
        return self.frame


@dataclass
class FuzzTarget:
    """The station under fuzz (the tests' one Station harness) and what the fuzzer knows of it."""

    station: FuzzTarget
    ids: dict[str, list[str]] = field(default_factory=dict)
    """Known-valid values for path parameters, by parameter name."""
    routes: list[tuple[str, str]] = field(default_factory=list)
    """(method, path template) of every route."""
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    """How many requests got which status, per route."""

    @property
    def client(self) -> TestClient[Any, Any]:
        assert self.station.client is not None
        return self.station.client

    @property
    def pipeline(self) -> Pipeline:
        return self.station.pipeline

    @property
    def pipeline_task(self) -> asyncio.Task[None]:
        return self.station.tasks[0]

    @property
    def api_key(self) -> str:
        return self.station.api_key


def fuzz_config(root: Path) -> Config:
    return parse_config(
        {
            "device": {"id": "fuzz-01"},
            "storage": {"path": str(root / "var")},
            "http": {"bind": f"127.0.0.1:{free_port()}"},
            "qr_analysis": {"enabled": False},  # a fuzzer must not reach the internet
            "classifier": {"enabled": False},
        },
        "<fuzz>",
        environ={},
    )


async def start_station(root: Path, stack: contextlib.AsyncExitStack) -> FuzzTarget:
    station = await stack.enter_async_context(
        running_station(
            fuzz_config(root), mqtt=False, http="client", previews={"cam0": FakePreview()}
        )
    )
    target = FuzzTarget(station)
    target.routes = sorted(
        {
            (route.method, route.resource.canonical)
            for route in target.client.app.router.routes()
            if route.resource is not None and route.method != "*"
        }
    )
    await seed(target)
    return target


async def seed(station: FuzzTarget) -> None:
    """Sessions, captures (one with an image) and a product, so valid ids exist."""
    headers = {"X-API-Key": station.api_key}
    client = station.client
    sessions = []
    for mode in ("both", "barcode_scan"):
        resp = await client.post(
            f"{API_BASE}/sessions", json={"capture_mode": mode}, headers=headers
        )
        sessions.append((await resp.json())["public_id"])
    captures = []
    for raw in (f"]C101{GTIN}10ABC", "https://example.com/x", "hello"):
        resp = await client.post(
            f"{API_BASE}/captures",
            json={"session_public_id": sessions[0], "capture_type": "BARCODE", "raw_value": raw},
            headers=headers,
        )
        captures.append((await resp.json())["public_id"])
    form = aiohttp.FormData()
    form.add_field("session_public_id", sessions[0])
    form.add_field("image", small_jpeg(), filename="a.jpg", content_type="image/jpeg")
    resp = await client.post(f"{API_BASE}/captures/upload-image", data=form, headers=headers)
    if resp.status == 201:
        captures.append((await resp.json())["public_id"])
    await client.put(f"{API_BASE}/products/{GTIN}", json={"name": "Fuzz biscuits"}, headers=headers)
    await station.pipeline.idle()
    station.ids = {
        "id": sessions + captures,
        "name": ["cam0"],
        "gtin": [GTIN],
        "path": ["app.js", "style.css", "index.html"],
    }


@pytest.fixture(scope="module")
def station() -> Iterator[tuple[asyncio.Runner, FuzzTarget]]:
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        stack = contextlib.AsyncExitStack()
        try:
            yield runner, runner.run(start_station(Path(tmp), stack))
        finally:
            runner.run(stack.aclose())


# ---- what a request is made of ----------------------------------------------------------

junk_text = st.text(max_size=40) | st.sampled_from(
    ["", "0", "-1", "1e309", "null", "NaN", "../../etc/passwd", "%00", "' OR 1=1 --", "x" * 600]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | junk_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(junk_text, inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "session_public_id",
    "capture_type",
    "raw_value",
    "gtin",
    "gs1_dl_data",
    "metadata",
    "symbology",
    "symbology_identifier",
    "source",
    "capture_mode",
    "status",
    "name",
    "brand",
    "products",
    "proposal",
    "proposed_value",
    "password",
    "username",
]
FIELD_VALUES = {
    "capture_type": st.sampled_from(["BARCODE", "IMAGE", "MANUAL", "barcode", ""]),
    "capture_mode": st.sampled_from(["both", "barcode_scan", "product_photography", "x"]),
    "status": st.sampled_from(["ACCEPTED", "REJECTED", "PENDING", "COMPLETED", "x"]),
    "gtin": st.sampled_from([GTIN, "123", "", "0" * 14, "abc"]),
    "raw_value": st.sampled_from([GTIN, f"https://id.gs1.org/01/{GTIN}", "", "x" * 501]),
}
QUERY_NAMES = [
    "limit",
    "offset",
    "status",
    "since",
    "until",
    "session",
    "session_public_id",
    "fps",
    "width",
    "q",
    "gtin",
    "format",
    "next",
]


@st.composite
def json_bodies(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(json_values)
    keys = draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True))
    return {k: draw(FIELD_VALUES.get(k, json_values)) for k in keys}


def image_bytes() -> st.SearchStrategy[bytes]:
    real = [small_jpeg(), *(p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))[:1])]

    def mutate(data: bytes, position: int, junk: bytes) -> bytes:
        position %= max(1, len(data))
        return data[:position] + junk + data[position + len(junk) :]

    return (
        st.sampled_from(real)
        | st.builds(mutate, st.sampled_from(real), st.integers(0, 10**6), st.binary(max_size=8))
        | st.binary(max_size=300)
        | st.sampled_from([b"GIF89a" + b"\x00" * 20, b"<svg/>", b"%PDF-1.4"])
    )


@st.composite
def broken_multipart(draw: st.DrawFn, station: FuzzTarget) -> bytes:
    """A well-formed multipart body, then cut short or spliced with junk."""
    parts = [
        (b'name="session_public_id"', station.ids["id"][0].encode()),
        (b'name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg', small_jpeg()),
        (
            b'name="file"; filename="p.csv"\r\nContent-Type: text/csv',
            b"gtin,name\n" + GTIN.encode(),
        ),
    ]
    body = b"".join(
        b"--B0undary\r\nContent-Disposition: form-data; " + head + b"\r\n\r\n" + value + b"\r\n"
        for head, value in draw(st.lists(st.sampled_from(parts), min_size=1, max_size=3))
    )
    body += b"--B0undary--\r\n"
    cut = draw(st.integers(0, len(body)))
    junk = draw(st.binary(max_size=12) | st.sampled_from([b"\r\n", b"--B0undary", b"\xff\xfe"]))
    return body[:cut] + junk + body[cut + draw(st.integers(0, 8)) :]


@dataclass(frozen=True)
class FuzzRequest:
    """One request to one route."""

    method: str
    template: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes | None
    form: list[tuple[str, bytes | str, str | None]] | None


@st.composite
def requests(draw: st.DrawFn, station: FuzzTarget) -> FuzzRequest:
    method, template = draw(st.sampled_from(station.routes))
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end].split(":")[0]
        valid = station.ids.get(name, [])
        value = draw(st.sampled_from(valid) | junk_text if valid else junk_text)
        path = path[:start] + quote(value, safe="") + path[end + 1 :]
    query = draw(
        st.dictionaries(st.sampled_from(QUERY_NAMES) | st.text(max_size=5), junk_text, max_size=3)
    )
    headers: dict[str, str] = {}
    key = draw(st.sampled_from(["valid"] * 8 + ["none", "junk"]))
    if key == "valid":
        headers["X-API-Key"] = station.api_key
    elif key == "junk":
        headers["X-API-Key"] = draw(st.text("abcdef_s0123", max_size=60))
    body: bytes | None = None
    form = None
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        kind = draw(st.sampled_from(["json", "json", "form", "raw", "broken-form", "none"]))
        if kind == "json":
            body = json.dumps(draw(json_bodies()), allow_nan=True).encode()
            headers["Content-Type"] = "application/json"
        elif kind == "form":
            form = [
                (name, draw(FIELD_VALUES.get(name, junk_text)), None)
                for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True))
            ]
            if draw(st.booleans()):
                form.append(("session_public_id", station.ids["id"][0], None))
            if draw(st.booleans()):
                form.append(("image", draw(image_bytes()), "upload.jpg"))
            if draw(st.booleans()):
                form.append(("file", draw(st.binary(max_size=200)), "products.csv"))
        elif kind == "broken-form":
            body = draw(broken_multipart(station))
            headers["Content-Type"] = "multipart/form-data; boundary=B0undary"
        elif kind == "raw":
            body = draw(st.binary(max_size=300))
            headers["Content-Type"] = draw(
                st.sampled_from(
                    [
                        "application/json",
                        "text/csv",
                        "text/plain",
                        "multipart/form-data",
                        "multipart/form-data; boundary=xyz",
                        "application/x-www-form-urlencoded",
                        "image/jpeg",
                        "x/y; charset=nope",
                    ]
                )
            )
    return FuzzRequest(method, template, path, query, headers, body, form)


async def send(station: FuzzTarget, request: FuzzRequest) -> tuple[int, str, bytes]:
    data: Any = request.body
    if request.form is not None:
        form = aiohttp.FormData()
        for name, value, filename in request.form:
            if filename:
                form.add_field(
                    name, value, filename=filename, content_type="application/octet-stream"
                )
            else:
                form.add_field(name, value)
        data = form
    async with asyncio.timeout(REQUEST_TIMEOUT):
        response = await station.client.request(
            request.method,
            request.path,
            params=request.query,
            headers=request.headers,
            data=data,
            allow_redirects=False,
        )
        try:
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith(STREAMING):
                return response.status, content_type, b""  # a live stream: headers are enough
            return response.status, content_type, await response.read()
        finally:
            response.close()


def check_response(request: FuzzRequest, status: int, content_type: str, body: bytes) -> None:
    assert status != 500, f"{request.method} {request.path}: 500 {body[:300]!r}"
    assert status < 500 or (request.template == "/healthz" and status == 503), (
        f"{request.method} {request.path}: {status} {body[:300]!r}"
    )
    if status >= 400 and request.template.startswith(API_BASE) and request.method != "HEAD":
        assert content_type.startswith("application/json"), (request, status, content_type)
        error = json.loads(body)["error"]
        assert set(error) >= {"code", "message", "field"}
        assert "Traceback" not in error["message"]


def test_fuzz_api_every_endpoint(station: tuple[asyncio.Runner, FuzzTarget]) -> None:
    runner, st_ = station

    @given(requests(st_))
    @settings(
        max_examples=max(1, int(600 * SCALE)),
        deadline=None,  # each request has its own REQUEST_TIMEOUT instead
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    def one_request(request: FuzzRequest) -> None:
        status, content_type, body = runner.run(send(st_, request))
        st_.statuses[(request.method, request.template, status)] += 1
        check_response(request, status, content_type, body)

    one_request()

    # The daemon survived: the pipeline still runs and the store still answers.
    async def healthy() -> int:
        await st_.pipeline.idle()
        response = await st_.client.get("/healthz")
        return response.status

    assert runner.run(healthy()) == 200
    assert not st_.pipeline_task.done()
    tried = sum(st_.statuses.values())
    covered = {(m, t) for m, t, _ in st_.statuses}
    print(f"\nAPI fuzz: {tried} requests over {len(covered)} of {len(st_.routes)} routes")
    for (method, template), count in sorted(
        Counter(dict.fromkeys(st_.routes, 0) | _by_route(st_.statuses)).items()
    ):
        print(f"  {count:5d}  {method:6s} {template}")


def _by_route(statuses: Counter[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    totals: Counter[tuple[str, str]] = Counter()
    for (method, template, _), count in statuses.items():
        totals[(method, template)] += count
    return dict(totals)


def test_fuzz_api_upload_image_never_500(station: tuple[asyncio.Runner, FuzzTarget]) -> None:
    """The upload route alone, with images, near-images and junk."""
    runner, st_ = station

    @given(
        image=image_bytes(),
        capture_type=st.sampled_from(["IMAGE", "BARCODE", "", "x"]),
        session=st.sampled_from([*st_.ids["id"][:1], "nope", ""]),
    )
    @settings(
        max_examples=max(1, int(200 * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    def one_upload(image: bytes, capture_type: str, session: str) -> None:
        request = FuzzRequest(
            "POST",
            f"{API_BASE}/captures/upload-image",
            f"{API_BASE}/captures/upload-image",
            {},
            {"X-API-Key": st_.api_key},
            None,
            [
                ("session_public_id", session, None),
                ("capture_type", capture_type, None),
                ("image", image, "photo.jpg"),
            ],
        )
        status, content_type, body = runner.run(send(st_, request))
        check_response(request, status, content_type, body)
        assert status in (201, 404, 409, 413, 415, 422), (status, body[:200])

    one_upload()


def test_fuzz_api_harness_sees_every_route(station: tuple[asyncio.Runner, FuzzTarget]) -> None:
    """The harness itself: the real app is up and its routes were all found."""
    _, st_ = station
    templates = {template for _, template in st_.routes}
    assert {"/healthz", f"{API_BASE}/sessions", f"{API_BASE}/captures/upload-image"} <= templates


# ---- what the fuzzer found, kept as regression tests --------------------------------------


@pytest.mark.parametrize("path", [f"{API_BASE}/events", f"{API_BASE}/sources/cam0/stream.mjpg"])
def test_api_head_on_a_live_stream_sends_no_body(
    station: tuple[asyncio.Runner, FuzzTarget], path: str
) -> None:
    """HEAD on a live stream used to write the stream after the headers and never end."""
    runner, st_ = station

    async def head() -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", st_.client.port)
        try:
            request = f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {st_.api_key}\r\n"
            writer.write(request.encode() + b"\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            try:
                extra = await asyncio.wait_for(reader.read(100), 0.5)
            except TimeoutError:
                extra = b""
            return head, extra
        finally:
            writer.close()

    head, extra = runner.run(head())
    assert head.startswith(b"HTTP/1.1 ")
    assert extra == b""


def _multipart(*parts: tuple[str, bytes]) -> bytes:
    body = b"".join(
        b'--B0undary\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"'
        + (b'; filename="f"' if name in ("image", "file") else b"")
        + b"\r\n\r\n"
        + value
        + b"\r\n"
        for name, value in parts
    )
    return body + b"--B0undary--\r\n"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            f"{API_BASE}/captures/upload-image",
            _multipart(("raw_value", b"\xff\xfe"), ("image", small_jpeg())),
        ),
        (f"{API_BASE}/products/import", _multipart(("file", b"gtin,name\n\xff\n"))),
        (f"{API_BASE}/captures/upload-image", b"\xa1"),
        (f"{API_BASE}/products/import", b"--B0undary\r\n\r\n"),
        (f"{API_BASE}/captures/upload-image", _multipart(("image", small_jpeg()))[:60]),
        (f"{API_BASE}/products/import", b"--B0undary\r\n\x00Content-Disposition: x\r\n\r\n"),
    ],
)
def test_api_broken_multipart_is_a_client_error(
    station: tuple[asyncio.Runner, FuzzTarget], path: str, body: bytes
) -> None:
    """A non-UTF-8 text part or a malformed multipart body used to be a 500."""
    runner, st_ = station
    request = FuzzRequest(
        "POST",
        path,
        path,
        {},
        {"X-API-Key": st_.api_key, "Content-Type": "multipart/form-data; boundary=B0undary"},
        body,
        None,
    )
    status, content_type, answer = runner.run(send(st_, request))
    check_response(request, status, content_type, answer)
    assert 400 <= status < 500
