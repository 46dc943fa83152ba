"""The fleet view: read-only JSON over HTTP, served by a collector (``[collector] http``).

The station's HTTP rules apply: the Host allowlist (``[http] allowed_hosts``), the security
headers, errors as ``{"error": {code, message, field}}``, and machines authenticate with
``X-API-Key`` from ``[http] api_keys_file`` (``scanstation api-key create --config …``). Every
route is a GET: a key reads the fleet, nothing here changes it (the read-only role).

    GET /fleet/api/v1/stations        online/offline, last seen, version, backlog, disk, no-reads
    GET /fleet/api/v1/scans-per-hour  ?hours=24 (1..744): scans per site and hour
    GET /fleet/api/v1/alerts          ?limit=100 (1..1000): the newest alerts
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime
from typing import Any

import psycopg
from aiohttp import web

from scanstation.collector.consumer import read_secret
from scanstation.config import Config
from scanstation.web.auth import ApiKeyStore
from scanstation.web.errors import error_response
from scanstation.web.server import allowed_host_names, host_allowlist_middleware
from scanstation.web.server import http_error_middleware as http_errors
from scanstation.web.ui import security_headers_middleware

log = logging.getLogger(__name__)

BASE = "/fleet/api/v1"
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
KEYS: web.AppKey[ApiKeyStore] = web.AppKey("keys", ApiKeyStore)

STATIONS_SQL = """
SELECT s.device_id, s.state, s.version, s.site, s.last_seen, s.last_seq, s.contiguous_seq,
       (s.telemetry->'outbox'->>'depth')::bigint, (s.telemetry->>'disk_free_mb')::float8,
       COALESCE(r.n, 0), COALESCE(m.n, 0),
       s.last_seen < now() - make_interval(secs => %(offline_s)s)
FROM stations s
LEFT JOIN (SELECT device_id, COUNT(*) AS n FROM capture_events
           WHERE created > now() - interval '1 hour' GROUP BY device_id) r USING (device_id)
LEFT JOIN (SELECT device_id, COUNT(*) AS n FROM noreads
           WHERE received_at > now() - interval '1 hour' GROUP BY device_id) m USING (device_id)
ORDER BY s.device_id
"""


class BadQuery(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadQuery(name, f"{name} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


async def _rows(request: web.Request, sql: str, params: Any) -> list[tuple[Any, ...]]:
    config = request.app[CONFIG]
    password = read_secret(config.collector.password_file, "collector.password_file")
    async with await psycopg.AsyncConnection.connect(
        config.collector.database, password=password, connect_timeout=10
    ) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path != "/healthz":
        key = request.headers.get("X-API-Key")
        if request.app[KEYS].verify(key) is None:
            return error_response(
                401,
                "the fleet view needs an X-API-Key header with a key of [http] api_keys_file "
                "(scanstation api-key create --config FILE)",
                field="X-API-Key",
            )
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except BadQuery as exc:
        return error_response(422, str(exc), exc.field)
    except psycopg.Error as exc:
        log.warning("fleet view: the database failed: %s", exc)
        return error_response(503, "the fleet database is not answering", code="unavailable")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def stations(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    offline_s = config.collector.offline_after_minutes * 60
    rows = await _rows(request, STATIONS_SQL, {"offline_s": offline_s})
    out = []
    for (
        device,
        state,
        version,
        site,
        seen,
        last_seq,
        contiguous,
        backlog,
        disk,
        reads,
        misses,
        silent,
    ) in rows:
        shown = "offline" if silent or state == "offline" else state
        total = reads + misses
        out.append(
            {
                "device_id": device,
                "state": shown,
                "last_seen": _iso(seen),
                "version": version,
                "site": site,
                "outbox_backlog": backlog,
                "disk_free_mb": disk,
                "scans_last_hour": reads,
                "noreads_last_hour": misses,
                "noread_rate": round(misses / total, 3) if total else None,
                "last_seq": last_seq,
                "stored_through_seq": contiguous,
            }
        )
    online = sum(1 for s in out if s["state"] == "online")
    return web.json_response({"stations": out, "online": online, "offline": len(out) - online})


async def scans_per_hour(request: web.Request) -> web.Response:
    hours = _int_param(request, "hours", 24, 1, 744)
    rows = await _rows(
        request,
        "SELECT site, date_trunc('hour', created) AS hour, COUNT(*) FROM capture_events "
        "WHERE created > now() - make_interval(hours => %s) GROUP BY 1, 2 ORDER BY 2, 1",
        (hours,),
    )
    return web.json_response(
        {"hours": hours, "rows": [{"site": s, "hour": _iso(h), "scans": n} for s, h, n in rows]}
    )


async def alerts(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 100, 1, 1000)
    rows = await _rows(
        request,
        "SELECT event_id, device_id, kind, origin, received_at, payload, published_at "
        "FROM alerts ORDER BY id DESC LIMIT %s",
        (limit,),
    )
    return web.json_response(
        {
            "alerts": [
                {
                    "event_id": e,
                    "device_id": d,
                    "kind": k,
                    "origin": o,
                    "received_at": _iso(r),
                    "alert": p,
                    "published_at": _iso(sent),
                }
                for e, d, k, o, r, p, sent in rows
            ]
        }
    )


def make_fleet_app(config: Config) -> web.Application:
    allowed = allowed_host_names(config.http.allowed_hosts, config.http.host)
    app = web.Application(
        middlewares=[
            security_headers_middleware,
            http_errors,
            host_allowlist_middleware(allowed, explicit=bool(config.http.allowed_hosts)),
            _errors_and_auth,
        ]
    )
    app[CONFIG] = config
    app[KEYS] = ApiKeyStore(config.api_keys_path)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(f"{BASE}/stations", stations)
    app.router.add_get(f"{BASE}/scans-per-hour", scans_per_hour)
    app.router.add_get(f"{BASE}/alerts", alerts)
    return app


class FleetServer:
    """The fleet view on ``[http] bind`` in a thread with its own event loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ready = threading.Event()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="collector-fleet-view", daemon=True)

    def start(self) -> FleetServer:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the fleet view did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(make_fleet_app(self.config), shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.http.host, self.config.http.port)
        await site.start()
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.config.http.port
        log.info("collector: fleet view on http://%s:%d%s", self.config.http.host, self.port, BASE)
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
