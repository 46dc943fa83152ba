"""The text a scanner sends: AIM symbology identifiers and the stand-ins scanners type for GS.

Every source that receives text (HID guns, serial scanners, stdin, the replay file) splits it
here, so a ``]C1`` prefix or a typed ``<GS>`` means the same thing on every input.

>>> split_scan("]C1010950600013435210ABC<GS>17270101", gs_substitutes=["<GS>"])
(']C1', '010950600013435210ABC\\x1d17270101')
>>> ScanText("4006381333931", "]E0", 10.0).symbology
'EAN/UPC'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

GS = "\x1d"
"""ASCII 29, the separator between variable-length GS1 fields (FNC1 in the symbol)."""

AIM_IDENTIFIER = re.compile(r"\][A-Za-z][0-9A-Za-z]")
"""An AIM symbology identifier: "]", a symbology letter, a modifier character (ISO 15424)."""

AIM_SYMBOLOGIES = {
    "A": "Code39",
    "C": "Code128",
    "d": "DataMatrix",
    "E": "EAN/UPC",
    "e": "DataBar",
    "F": "Codabar",
    "G": "Code93",
    "I": "ITF",
    "J": "DotCode",
    "L": "PDF417",
    "M": "MSI",
    "Q": "QRCode",
    "U": "MaxiCode",
    "X": "Other",
    "z": "Aztec",
}
"""The symbology letters of ISO/IEC 15424 that scanners send, to fill Scan.symbology."""


def symbology_name(identifier: str) -> str:
    """Human name of the symbology an AIM identifier names (``]d2`` → ``DataMatrix``), or ""."""
    return AIM_SYMBOLOGIES.get(identifier[1:2], "") if identifier else ""


def restore_gs(text: str, gs_substitutes: Iterable[str]) -> str:
    """Replace the typed stand-ins for GS (e.g. the four characters ``\\x1d``) with GS.

    Longer substitutes are replaced first, so ``<GS>`` wins over ``GS``; empty ones are ignored.
    """
    for substitute in sorted((s for s in gs_substitutes if s), key=len, reverse=True):
        text = text.replace(substitute, GS)
    return text


def split_scan(
    text: str, aim_identifier: bool = True, gs_substitutes: Iterable[str] = ()
) -> tuple[str, str]:
    """Split a scanner's text into (AIM symbology identifier, value with GS substitutes as GS).

    >>> split_scan("]C1...", aim_identifier=False)
    ('', ']C1...')
    """
    identifier = ""
    if aim_identifier and AIM_IDENTIFIER.match(text):
        identifier, text = text[:3], text[3:]
    return identifier, restore_gs(text, gs_substitutes)


@dataclass(frozen=True, slots=True)
class ScanText:
    """One complete scan as a text source received it (keystrokes or serial bytes)."""

    raw_value: str
    """The scanned text, framing removed, GS as ASCII 29, AIM identifier split off."""
    symbology_identifier: str
    """The AIM identifier the scanner sent first (``]d2``), or ``""``."""
    started_at: float
    """When the scan began: its first key press, or the arrival of a serial frame (seconds)."""
    ended_at: float = -1.0
    """When it ended (terminator, suffix or last key); the same as ``started_at`` if not given."""
    keystrokes: int = 0
    """Key presses in the scan, modifiers included (0 for serial scanners)."""

    def __post_init__(self) -> None:
        if self.ended_at < 0:
            object.__setattr__(self, "ended_at", self.started_at)

    @property
    def symbology(self) -> str:
        """Human name of the symbology from the AIM identifier (``DataMatrix``), or ``""``."""
        return symbology_name(self.symbology_identifier)
