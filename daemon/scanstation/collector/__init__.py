"""The fleet collector: MQTT shared subscriptions of every station's events into PostgreSQL.

``schema`` (versioned PostgreSQL migrations, monthly partitions, retention), ``sink`` (one
transaction per batch: COPY into a staging table, INSERT … ON CONFLICT DO NOTHING),
``consumer`` (paho-mqtt with manual acknowledgement: a message is acknowledged only after the
COMMIT that holds it), ``healer`` (seq gaps and lost tails, asked for with ``outbox.replay``).
May import config, model, payloads, publish (connection helpers, topics) and services;
nothing in the station imports it.
"""


class CollectorError(Exception):
    """A collector problem: bad configuration, an unreachable database, a bad message."""
