"""Barcodes as data, pure and thread-safe: no I/O, no clock of its own, no configuration objects.

Owns decoding frames with zxing-cpp (decode.py), the text scanners send — AIM identifiers and
GS substitutes (scantext.py) —, interpretation of raw values (interpret.py: GTIN arithmetic in
gtin.py, the GS1 Syntax Dictionary and its checks in gs1/), the output templates (format.py)
and match rules (match.py).
May import: model. Everything else may import it.
"""


class BarcodeError(Exception):
    """A barcode value, frame or rule that cannot be used; the message names it."""
