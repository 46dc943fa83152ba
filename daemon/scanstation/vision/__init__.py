"""Product photos: the TFLite classifier (classify.py), enrichment proposals and visual
resolving by embedding (enrich.py), and upload hardening (images.py). Inference and image work
run in threads. May import: barcode, config, model.
"""


class VisionError(Exception):
    """A model that cannot load, an image that cannot be used."""
