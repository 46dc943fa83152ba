"""The MQTT link to the cloud broker (SPEC §7): one connection on paho's network thread
(connection.py), the station's topics and presence (topics.py), remote commands (commands.py),
Home Assistant discovery (discovery.py), and MqttLink (mqtt.py): the outbox drain, telemetry and
running commands. May import: pipeline, services, store, config, health, payloads, model.
"""


class PublishError(Exception):
    """The broker link failed or a command could not run."""
