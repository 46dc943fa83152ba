"""Home Assistant MQTT discovery: the retained config messages that describe the station."""

from __future__ import annotations

import json
from typing import Any

from scanstation import __version__
from scanstation.config import Config
from scanstation.publish.topics import topics_for


def discovery_messages(config: Config) -> list[tuple[str, bytes]]:
    """Home Assistant MQTT discovery: one device, sensors for last scan, status and backlog.

    The sensors read the topics the station publishes anyway (captures, status, telemetry),
    so discovery adds no traffic beyond these retained config messages.
    """
    topics = topics_for(config)
    device_id = config.device.id
    node = f"scanstation_{device_id}".replace(".", "_").replace("-", "_")
    device = {
        "identifiers": [node],
        "name": f"scanstation {device_id}",
        "manufacturer": "scanstation",
        "model": "scanstation edge scanner",
        "sw_version": __version__,
    }
    availability = {
        "availability_topic": topics.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    sensors: list[tuple[str, dict[str, Any]]] = [
        (
            "last_scan",
            {
                "name": "Last scan",
                "state_topic": topics.event("captures"),
                "value_template": "{{ value_json.raw_value[:250] }}",
                "json_attributes_topic": topics.event("captures"),
                "json_attributes_template": (
                    "{{ {'gtin': value_json.gtin, 'status': value_json.status, "
                    "'product': value_json.product_name, 'time': value_json.created} | tojson }}"
                ),
                "icon": "mdi:barcode-scan",
                **availability,
            },
        ),
        (
            "status",
            {
                "name": "Status",
                "state_topic": topics.status,
                "value_template": "{{ value_json.state }}",
                "icon": "mdi:lan-connect",
            },
        ),
        (
            "outbox_depth",
            {
                "name": "Outbox depth",
                "state_topic": topics.telemetry,
                "value_template": "{{ value_json.outbox.depth }}",
                "unit_of_measurement": "events",
                "state_class": "measurement",
                "icon": "mdi:tray-full",
                **availability,
            },
        ),
    ]
    messages = []
    for key, body in sensors:
        payload = {**body, "unique_id": f"{node}_{key}", "object_id": f"{node}_{key}"}
        payload["device"] = device
        topic = f"{config.mqtt.homeassistant_prefix}/sensor/{node}/{key}/config"
        messages.append((topic, json.dumps(payload).encode()))
    return messages
