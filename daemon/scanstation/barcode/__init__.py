"""barcode."""
