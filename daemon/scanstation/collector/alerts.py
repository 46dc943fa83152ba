"""Fleet alerts: raised from the stored state, sent on once (MQTT and an optional webhook).

The healing collector raises them: a station silent longer than ``offline_after_minutes``, a
no-read share above ``noread_alert_rate`` in the last hour; the stations' own alerts
(recalled or expired items scanned) arrive on ``…/alerts`` and are stored by the sink. Every
alert has a deterministic ``event_id`` (one per outage, one per station and hour), so two
collectors never raise it twice; each is published to ``{prefix}/_fleet/alerts`` and POSTed
to ``alert_webhook_url`` once, then marked ``published_at``.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg

from scanstation.config import CollectorConfig

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0


def raise_alerts(conn: psycopg.Connection[Any], cfg: CollectorConfig) -> int:
    """Insert the collector's alerts that hold now; returns how many are new."""
    new = 0
    with conn.transaction():
        cur = conn.execute(
            "INSERT INTO alerts (event_id, device_id, kind, origin, received_at, payload) "
            "SELECT 'offline:' || device_id || ':' || "
            "floor(extract(epoch FROM last_seen))::bigint, device_id, 'station_offline', "
            "'collector', now(), jsonb_build_object('kind', 'station_offline', 'device_id', "
            "device_id, 'site', site, 'last_seen', last_seen, 'state', state, "
            "'offline_after_minutes', %s::float8) "
            "FROM stations WHERE last_seen < now() - make_interval(secs => %s) "
            "ON CONFLICT (event_id) DO NOTHING",
            (cfg.offline_after_minutes, cfg.offline_after_minutes * 60),
        )
        new += max(cur.rowcount, 0)
        cur = conn.execute(
            "WITH reads AS (SELECT device_id, COUNT(*) AS n FROM capture_events "
            "WHERE created > now() - interval '1 hour' GROUP BY device_id), "
            "misses AS (SELECT device_id, COUNT(*) AS n FROM noreads "
            "WHERE received_at > now() - interval '1 hour' GROUP BY device_id), "
            "rates AS (SELECT m.device_id, m.n AS noreads, COALESCE(r.n, 0) AS reads, "
            "m.n::float8 / (m.n + COALESCE(r.n, 0)) AS rate FROM misses m "
            "LEFT JOIN reads r USING (device_id)) "
            "INSERT INTO alerts (event_id, device_id, kind, origin, received_at, payload) "
            "SELECT 'noread:' || device_id || ':' || to_char(now() AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24'), device_id, 'noread_rate', 'collector', now(), "
            "jsonb_build_object('kind', 'noread_rate', 'device_id', device_id, 'rate', "
            "round(rate::numeric, 3), 'noreads', noreads, 'reads', reads, 'threshold', "
            "%s::float8) FROM rates WHERE noreads + reads >= %s AND rate > %s "
            "ON CONFLICT (event_id) DO NOTHING",
            (cfg.noread_alert_rate, cfg.noread_alert_min_events, cfg.noread_alert_rate),
        )
        new += max(cur.rowcount, 0)
    return new


def post_webhook(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 (an http(s) URL the config validated)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "scanstation-collector"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
        response.read()


def publish_pending(
    conn: psycopg.Connection[Any],
    cfg: CollectorConfig,
    publish: Callable[[bytes], None],
    webhook: Callable[[str, dict[str, Any]], None] = post_webhook,
) -> list[dict[str, Any]]:
    """Send every unpublished alert (oldest first) to MQTT and the webhook; mark it sent.

    A webhook that fails leaves the alert unpublished: it is tried again next time.
    """
    rows = conn.execute(
        "SELECT id, event_id, device_id, kind, origin, received_at, payload FROM alerts "
        "WHERE published_at IS NULL ORDER BY id LIMIT 100"
    ).fetchall()
    sent = []
    for row_id, event_id, device, kind, origin, received, payload in rows:
        body = {
            "event_id": event_id,
            "device_id": device,
            "kind": kind,
            "origin": origin,
            "received_at": received.isoformat(),
            "alert": payload,
        }
        if cfg.alert_webhook_url:
            try:
                webhook(cfg.alert_webhook_url, body)
            except OSError as exc:
                log.warning("collector: alert webhook %s failed: %s", cfg.alert_webhook_url, exc)
                break
        publish(json.dumps(body).encode())
        conn.execute("UPDATE alerts SET published_at = now() WHERE id = %s", (row_id,))
        sent.append(body)
    if sent:
        log.info("collector: %d fleet alert(s) sent", len(sent))
    return sent
