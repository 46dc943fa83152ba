"""scanstation: an edge scanning appliance for the Raspberry Pi.

The package root holds only the version; docs/architecture.md maps the packages (barcode, qr,
vision, config, store, services, pipeline, sources, outputs, publish, web, hw, commands) and the
direction in which they may import each other (checked by tests/test_architecture.py).
"""

__version__ = "0.1.0"
