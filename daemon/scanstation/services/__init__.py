"""Operations that the HTTP API, MQTT commands, GPIO and the command line call instead of
driving the store and the bus by hand: sessions (sessions.py), the catalog files (catalog.py),
CSV exports (exports.py), image retention (retention.py), the roles (roles.py) and
backups and their restore (backup.py).
May import: store, bus, payloads, barcode, config, model.
"""


class ServiceError(Exception):
    """An operation refused for what it was given; the message names the value."""
