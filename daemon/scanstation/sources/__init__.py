"""Scan sources: each turns a device (camera, HID gun, serial scanner, stdin) into Scans.

base.py holds the contracts (Source, Camera, Preview, SourceHealth); every adapter runs until
cancelled and reports `reconnecting` instead of returning on a recoverable error.
May import: barcode, config, hw, model.
"""


class SourceError(Exception):
    """A source that cannot read: a bad setting, a missing or refused device."""
