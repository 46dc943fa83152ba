"""Operations that the HTTP API, MQTT commands, GPIO and the command line call instead of
driving the store and the bus by hand: sessions (sessions.py), the catalog files (catalog.py),
CSV exports (exports.py) and image retention (retention.py).
May import: store, bus, payloads, barcode, config, model.
"""


class ServiceError(Exception):
    """An operation refused for what it was given; the message names the value."""
