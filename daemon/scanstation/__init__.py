"""scanstation: an edge scanning appliance for the Raspberry Pi."""

__version__ = "0.1.0"
