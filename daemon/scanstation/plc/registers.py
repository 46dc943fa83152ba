"""The Modbus register map (docs/outputs.md): counters and the last result as input registers.

Input registers, 16 bits each; every counter is a uint32 with the high word first:

====  =======================================================================
0–1   good reads (windows)
2–3   no-reads
4–5   multiple-code reads
6–7   match rejects
8     length in bytes of the last result (0–100)
9…58  the last result in ASCII, two bytes per register, high byte first
====  =======================================================================

>>> input_registers({"good": 70000, "noread": 2, "multiple": 0, "rejected": 1}, "AB1")[:12]
[1, 4464, 0, 2, 0, 0, 0, 1, 3, 16706, 12544, 0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COUNTERS = ("good", "noread", "multiple", "rejected")
"""The read-rate results in register order (0–1, 2–3, 4–5, 6–7)."""
LENGTH_REGISTER = 8
TEXT_REGISTER = 9
TEXT_BYTES = 100
REGISTER_COUNT = TEXT_REGISTER + TEXT_BYTES // 2
"""59 input registers: 0 … 58."""
TRIGGER_COIL = 0


def uint32(value: int) -> tuple[int, int]:
    """High word, low word of ``value`` (wrapping at 2**32, as a PLC counter does)."""
    value %= 1 << 32
    return value >> 16, value & 0xFFFF


def ascii_bytes(text: str) -> bytes:
    """The last result as the registers carry it: ASCII ('?' for anything else), ≤ 100 bytes."""
    return text.encode("ascii", "replace")[:TEXT_BYTES]


def input_registers(totals: Mapping[Any, int], last_result: str) -> list[int]:
    """All ``REGISTER_COUNT`` input registers for these counters and last result."""
    registers: list[int] = []
    for name in COUNTERS:
        registers.extend(uint32(totals.get(name, 0)))
    data = ascii_bytes(last_result)
    registers.append(len(data))
    padded = data + b"\0" * (TEXT_BYTES - len(data))
    registers.extend((padded[i] << 8) | padded[i + 1] for i in range(0, TEXT_BYTES, 2))
    return registers


def decode_text(registers: list[int]) -> str:
    """The inverse for clients and tests: length register + text registers → the text."""
    length = registers[LENGTH_REGISTER]
    data = b"".join(r.to_bytes(2, "big") for r in registers[TEXT_REGISTER:])
    return data[:length].decode("ascii")
