"""[[outputs]]: keyboard gadget, serial and webhook outputs, their filters and match rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from scanstation.config.base import KeyboardLayout, Section

CaptureTypeName = Literal["BARCODE", "IMAGE", "MANUAL"]

TerminalStatusName = Literal["COMPLETED", "NOT_FOUND", "FAILED"]


def _live_types() -> list[CaptureTypeName]:
    return ["BARCODE", "MANUAL"]


def _sold_statuses() -> list[TerminalStatusName]:
    return ["COMPLETED", "NOT_FOUND"]


class OutputFilter(Section):
    """Which captures an output hands on (each list empty = any)."""

    capture_types: list[CaptureTypeName] = Field(
        default_factory=_live_types,
        description="Capture types handed on (IMAGE: photos and no-read frames)",
    )
    statuses: list[TerminalStatusName] = Field(
        default_factory=_sold_statuses,
        description="Terminal statuses handed on (FAILED: invalid GS1 data, bad check digit)",
    )
    sources: list[str] = Field(
        default_factory=list, description="Source names handed on; empty: every source"
    )


class MatchRules(Section):
    """Industrial match code: a read must pass every rule given (none given: any read passes)."""

    symbologies: list[str] = Field(
        default_factory=list,
        description="Accepted symbologies: names (EAN13, DataMatrix, QRCode, Code128, ...) or "
        "AIM identifiers (']E0', or ']E' for any EAN/UPC); empty: any",
    )
    kinds: list[Literal["gtin", "gs1", "digital_link", "url", "text"]] = Field(
        default_factory=list, description="Accepted data formats; empty: any"
    )
    gtin_prefixes: list[str] = Field(
        default_factory=list,
        description="The GTIN must start with one of these (compared with the GTIN-14 and its "
        "13/12-digit forms, so '400' matches EAN-13 400…); empty: any, even no GTIN",
    )
    pattern: str = Field(
        "", description="Regular expression the whole raw value must match; '' = any"
    )
    require_ais: list[str] = Field(
        default_factory=list,
        description="GS1 Application Identifiers the read must carry, e.g. ['17'] for an expiry",
    )
    mask: str = Field(
        "",
        description="Reader-style mask the whole raw value must match: ? any character, # a "
        "digit, @ a letter, * any run, \\ makes the next one literal; e.g. '400##########'",
    )
    sequence: Literal["", "increment"] = Field(
        "",
        description="increment: the number in each read must be the previous read's plus "
        "sequence_step (out of sequence: a reject)",
    )
    sequence_step: int = Field(1, description="The sequence's step (negative: counting down)")
    sequence_field: str = Field(
        "raw",
        description="What the sequence compares, by its last run of digits: raw, gtin, or a "
        "GS1 AI such as '21'",
    )
    on_mismatch: Literal["reject", "skip"] = Field(
        "reject",
        description="reject: pulse the reject output and queue an event; skip: just do not "
        "hand the read on",
    )
    event_topic: Literal["alerts", "noreads", "none"] = Field(
        "alerts", description="MQTT topic of the event a rejected read queues (none: no event)"
    )

    @model_validator(mode="after")
    def _valid_rules(self) -> MatchRules:
        from scanstation.barcode.match import compile_rules

        compile_rules(self)  # raises ValueError naming the bad rule
        return self


class _OutputBase(Section):
    name: str = Field(
        "",
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="Output name (default: its type); unique; a webhook's queued events are "
        "kept under it, so renaming one strands what it had queued",
    )
    enabled: bool = Field(True, description="false: configured but not used")
    filter: OutputFilter = Field(default_factory=OutputFilter)
    match: MatchRules = Field(default_factory=MatchRules)
    mode: Literal["template", "gtin", "hri"] = Field(
        "template",
        description="template: the format below; gtin: only the item number (POS); "
        "hri: GS1 human-readable (01)…(17)…(10)…",
    )
    format: str = Field(
        "{raw}",
        description="Template: {raw} {gtin} {gtin13} {item} {ai[10]} {hri} {symbology} "
        "{symbology_identifier} {source} {status} {public_id} {product_name}; {{ }} for braces",
    )
    gtin_digits: Literal[8, 12, 13, 14] | None = Field(
        None,
        description="gtin mode: leading zeros of the GTIN-14 dropped down to this many digits "
        "(unset: its natural length: 8, 12, 13 or 14)",
    )
    no_gtin: Literal["raw", "skip"] = Field(
        "raw", description="gtin and hri modes, for a read without a GTIN: type it as read, or skip"
    )
    prefix: str = Field("", description="Text sent before every read")
    suffix: str = Field("", description="Text sent after every read (before the terminator)")
    aim_prefix: bool = Field(
        False, description="Send the AIM symbology identifier (]E0, ]d2, …) first"
    )
    max_age_ms: int = Field(
        3000,
        ge=0,
        description="Keyboard and serial: a read still unsent this long after its capture was "
        "committed (device missing, port closed, a backlog) is dropped, never sent late "
        "(0: no limit)",
    )

    @field_validator("format")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        from scanstation.barcode.format import compile_template

        compile_template(value)  # raises FormatError (a ValueError) naming the bad field
        return value


class KeyboardGadgetOutputConfig(_OutputBase):
    """Types every read into the host (a POS) as a USB keyboard: a Pi in USB device mode."""

    type: Literal["keyboard_gadget"]
    device: str = Field(
        "/dev/hidg0", description="HID gadget device (firmware-config/usb-gadget.sh)"
    )
    layout: KeyboardLayout = Field(
        "us", description="Keyboard layout the host (the POS) is set to, as xkb spells it"
    )
    gs: Literal["ctrl", "alt", "text", "drop"] = Field(
        "ctrl",
        description="How GS (ASCII 29) is typed: ctrl = Ctrl+] (the key right of P), alt = "
        "Alt+0029, text = gs_text, drop = not at all",
    )
    gs_text: str = Field("", description="With gs = text: what is typed in place of GS")
    terminator: Literal["enter", "tab", "none"] = Field(
        "enter", description="Key pressed after every read"
    )
    write_timeout_ms: int = Field(
        1000,
        ge=1,
        description="The host must take each report within this long (else it is not listening)",
    )

    @model_validator(mode="after")
    def _gs_text_given(self) -> KeyboardGadgetOutputConfig:
        if self.gs == "text" and not self.gs_text:
            raise ValueError("gs = 'text' needs gs_text, e.g. gs_text = '<GS>'")
        return self


class SerialOutputConfig(_OutputBase):
    """Writes every read as a line to a serial port (RS-232, USB-CDC), e.g. to a PLC."""

    type: Literal["serial"]
    port: str = Field(..., min_length=1, description="e.g. /dev/ttyUSB0 or /dev/serial/by-id/…")
    baud: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["none", "even", "odd"] = "none"
    stopbits: Literal[1, 2] = 1
    terminator: str = Field("\r\n", description="Sent after every read")
    encoding: Literal["utf-8", "latin-1", "cp1252", "ascii"] = Field(
        "utf-8", description="Characters the encoding lacks are sent as '?'"
    )
    reconnect_s: float = Field(2.0, gt=0, description="Pause before reopening a lost port")


class WebhookOutputConfig(_OutputBase):
    """POSTs every capture event as JSON to a URL, from the durable outbox (retried until 2xx)."""

    type: Literal["webhook"]
    url: str = Field(..., pattern=r"^https?://\S+$", description="http(s) URL to POST to")
    format: str = Field(
        "",
        description='Optional template; when set, the JSON carries its result as "text"',
    )
    filter: OutputFilter = Field(
        default_factory=lambda: OutputFilter(statuses=["COMPLETED", "NOT_FOUND", "FAILED"]),
        description="Which captures are posted",
    )
    hmac_secret_file: Path | None = Field(
        None,
        description="File holding a shared secret: every POST then carries "
        "X-Scanstation-Signature = sha256=HMAC(secret, timestamp + '.' + body)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers, e.g. an Authorization"
    )
    timeout_s: float = Field(10.0, gt=0, description="One request's time limit")
    retry_initial_s: float = Field(1.0, gt=0, description="First pause after a failed POST")
    retry_max_s: float = Field(300.0, gt=0, description="Longest pause between retries")
    dead_letter_after: int = Field(
        5,
        ge=1,
        description="A capture refused this many times in a row with a 4xx (not 408/429) "
        "goes to the dead-letter table instead of blocking the queue",
    )
    verify_tls: bool = Field(True, description="Check the server's certificate")


def output_name(
    output: KeyboardGadgetOutputConfig | SerialOutputConfig | WebhookOutputConfig,
) -> str:
    """An output's name: ``name``, else its type (``webhook``)."""
    return output.name or output.type


def unique_output_names(outputs: list[Any]) -> list[Any]:
    """Validator for ``Config.outputs``: names (defaulting to the type) must be unique."""
    seen: set[str] = set()
    for output in outputs:
        name = output_name(output)
        if name in seen:
            raise ValueError(
                f"two outputs are named {name!r}; give each [[outputs]] entry its own name "
                "(an unnamed output is named after its type)"
            )
        seen.add(name)
    return outputs


OutputConfig = Annotated[
    KeyboardGadgetOutputConfig | SerialOutputConfig | WebhookOutputConfig,
    Field(discriminator="type"),
]
"""One ``[[outputs]]`` entry: keyboard_gadget | serial | webhook."""
