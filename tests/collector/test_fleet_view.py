"""The fleet view and the fleet alerts, over a real PostgreSQL (and a real Mosquitto)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import psycopg
import pytest

from collectors import BROKER_CONF, collector_settings
from mosquitto import Broker, Subscriber, free_port
from postgres import pg_dsn_fixture, pg_server_fixture  # noqa: F401 (fixtures)
from scanstation.collector.alerts import publish_pending, raise_alerts
from scanstation.collector.fleet import BASE, FleetServer
from scanstation.collector.schema import migrate
from scanstation.collector.sink import Message, Sink
from scanstation.config import parse_config
from scanstation.web.auth import ApiKeyStore


def seed(dsn: str) -> None:
    now = time.time()
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 60))
    messages = [
        Message(
            f"scanstation/{device}/captures",
            json.dumps(
                {
                    "seq": seq,
                    "event_id": f"{device}-{seq}",
                    "created": created,
                    "site": site,
                    "status": "COMPLETED",
                    "gtin": "04006381333931",
                    "device_id": device,
                }
            ).encode(),
            now,
        )
        for device, site, n in (("lane-01", "store-7", 8), ("lane-02", "store-9", 2))
        for seq in range(1, n + 1)
    ]
    messages += [
        Message("scanstation/lane-02/noreads", json.dumps({"event_id": f"n{i}"}).encode(), now)
        for i in range(6)
    ]
    messages += [
        Message(
            "scanstation/lane-01/telemetry",
            json.dumps(
                {
                    "version": "1.4",
                    "site": "store-7",
                    "last_seq": 8,
                    "outbox": {"depth": 3},
                    "disk_free_mb": 900.5,
                }
            ).encode(),
            now,
        ),
        Message(
            "scanstation/lane-02/status",
            json.dumps({"state": "online", "version": "1.3", "site": "store-9"}).encode(),
            now - 3600,  # silent for an hour
        ),
        Message(
            "scanstation/lane-01/alerts",
            json.dumps(
                {
                    "event_id": "a-1",
                    "checks": {"recalled": True, "not_for_sale": True},
                    "gtin": "04006381333931",
                }
            ).encode(),
            now,
        ),
    ]
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        Sink(conn, "scanstation", 36500).store(messages)


def fleet_config(tmp_path: Path, dsn: str, **collector: Any) -> Any:
    settings = collector_settings(
        tmp_path, dsn, 1883, offline_after_minutes=10, noread_alert_min_events=5, **collector
    )
    bind = f"127.0.0.1:{free_port()}"
    settings["http"] = {"bind": bind, "api_keys_file": str(tmp_path / "keys.json")}
    settings["collector"]["http"] = True
    return parse_config(settings, "<test>", environ={})


async def test_the_fleet_view_answers_with_a_key_only_and_only_reads(
    tmp_path: Path, pg_dsn: str
) -> None:
    seed(pg_dsn)
    config = fleet_config(tmp_path, pg_dsn)
    key = ApiKeyStore(config.api_keys_path).create("fleet dashboard")
    server = FleetServer(config).start()
    url = f"http://127.0.0.1:{server.port}{BASE}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/stations") as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["field"] == "X-API-Key"
            headers = {"X-API-Key": key}
            async with http.get(f"{url}/stations", headers=headers) as resp:
                assert resp.status == 200
                body = await resp.json()
            async with http.post(f"{url}/stations", headers=headers) as resp:
                assert resp.status == 405
            async with http.get(f"{url}/scans-per-hour?hours=2", headers=headers) as resp:
                hours = await resp.json()
            async with http.get(f"{url}/scans-per-hour?hours=0", headers=headers) as resp:
                assert resp.status == 422
                assert (await resp.json())["error"]["field"] == "hours"
            async with http.get(f"{url}/alerts", headers=headers) as resp:
                alerts = (await resp.json())["alerts"]
            async with http.get(
                f"{url}/stations", headers={**headers, "Host": "evil.example"}
            ) as resp:
                assert resp.status == 403
    finally:
        server.stop()
    lanes = {s["device_id"]: s for s in body["stations"]}
    assert (body["online"], body["offline"]) == (1, 1)
    one, two = lanes["lane-01"], lanes["lane-02"]
    assert (one["state"], one["version"], one["outbox_backlog"], one["disk_free_mb"]) == (
        "online",
        "1.4",
        3,
        900.5,
    )
    assert (one["scans_last_hour"], one["noread_rate"], one["last_seq"]) == (8, 0.0, 8)
    assert (two["state"], two["noreads_last_hour"], two["noread_rate"]) == ("offline", 6, 0.75)
    assert {(r["site"], r["scans"]) for r in hours["rows"]} == {("store-7", 8), ("store-9", 2)}
    assert [(a["kind"], a["origin"]) for a in alerts] == [("recalled", "station")]


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_alerts_are_raised_once_and_sent_to_mqtt_and_the_webhook(
    tmp_path: Path, pg_dsn: str
) -> None:
    seed(pg_dsn)
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    broker = Broker(tmp_path / "broker", extra_conf=BROKER_CONF).start()
    config = fleet_config(
        tmp_path, pg_dsn, alert_webhook_url=f"http://127.0.0.1:{hook.server_port}/alerts"
    )
    try:
        with (
            Subscriber(broker.port, ["scanstation/_fleet/alerts"]) as sub,
            psycopg.connect(pg_dsn, autocommit=True) as conn,
        ):
            assert raise_alerts(conn, config.collector) == 2  # lane-02 offline, its no-reads
            assert raise_alerts(conn, config.collector) == 0  # once per outage and hour

            def publish(payload: bytes) -> None:
                sub.publish("scanstation/_fleet/alerts", payload)

            sent = publish_pending(conn, config.collector, publish)
            assert publish_pending(conn, config.collector, publish) == []
            got = sub.wait_for(lambda ms: len(ms) >= 3, what="three alerts")
    finally:
        broker.stop()
        hook.shutdown()
    kinds = sorted((a["kind"], a["device_id"], a["origin"]) for a in sent)
    assert kinds == [
        ("noread_rate", "lane-02", "collector"),
        ("recalled", "lane-01", "station"),
        ("station_offline", "lane-02", "collector"),
    ]
    assert sorted(m.json()["kind"] for m in got) == ["noread_rate", "recalled", "station_offline"]
    assert sorted(a["kind"] for a in _Hook.received) == [
        "noread_rate",
        "recalled",
        "station_offline",
    ]
    rate = next(a for a in sent if a["kind"] == "noread_rate")["alert"]
    assert (rate["noreads"], rate["reads"], rate["rate"]) == (6, 2, 0.75)


@pytest.mark.parametrize("url", ["ftp://x", "hooks.example/alerts"])
def test_the_alert_webhook_must_be_http(tmp_path: Path, url: str) -> None:
    from scanstation.config import ConfigError

    with pytest.raises(ConfigError, match="alert_webhook_url"):
        fleet_config(tmp_path, "postgresql://x@127.0.0.1/y", alert_webhook_url=url)
