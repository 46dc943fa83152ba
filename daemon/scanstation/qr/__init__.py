"""QR analysis: follows an http(s) QR code's redirect chain and says who resolves it.

The only outbound network client of the station, behind the network guard (netguard.py: public
addresses only, checked at connect time). May import: barcode, config, model.
"""


class QrError(Exception):
    """A QR analysis that cannot run or an address the guard refuses."""
