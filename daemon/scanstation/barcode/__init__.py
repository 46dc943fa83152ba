"""Barcodes as data, pure and thread-safe: no I/O, no clock of its own, no configuration objects.

Owns decoding frames with zxing-cpp (decode.py), the text scanners send — AIM identifiers and
GS substitutes (scantext.py) —, interpretation of raw values with biip plus the GS1 checks biip
lacks (interpret.py, gs1/), the output templates (format.py) and match rules (match.py).
May import: model. Everything else may import it.
"""


class BarcodeError(Exception):
    """A barcode value, frame or rule that cannot be used; the message names it."""
