"""The aiohttp server: the Closient-compatible API under /scanner/api/v1 and the web UI.

server.py builds the app (middlewares, auth), routes/ holds one module per resource, context.py
the typed app state. May import: pipeline, services, store (readers), sources (health and
preview contracts), vision (upload checks), config, bus, payloads, model.
"""


class WebError(Exception):
    """An HTTP-side refusal or a bad web setting (API errors carry their status)."""
