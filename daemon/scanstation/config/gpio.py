"""[gpio]: BCM pins for feedback, trigger input, reject output and the session button."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from scanstation.config.base import Section

BeepPattern = tuple[int, int, int]
"""on ms, off ms, repetitions: [60, 0, 1] is one short beep, [150, 100, 2] two longer ones."""

RejectReason = Literal["no_read", "not_found", "failed", "expired", "recalled"]

REJECT_REASONS: tuple[RejectReason, ...] = (
    "no_read",
    "not_found",
    "failed",
    "expired",
    "recalled",
)


class GpioConfig(Section):
    """GPIO feedback and conveyor I/O through gpiozero (BCM pin numbers; unset pins are unused)."""

    good_read: int | None = Field(None, ge=0, le=27, description="BCM pin of the good-read LED")
    no_read: int | None = Field(
        None, ge=0, le=27, description="BCM pin of the no-read LED (also blinks on alerts)"
    )
    buzzer: int | None = Field(None, ge=0, le=27, description="BCM pin of an active buzzer")
    trigger_input: int | None = Field(
        None,
        ge=0,
        le=27,
        description="BCM pin of the photo-eye; opens a read window on every camera with "
        "trigger = gpio",
    )
    reject_output: int | None = Field(
        None, ge=0, le=27, description="BCM pin pulsed to reject an item (conveyor gate, pusher)"
    )
    session_button: int | None = Field(
        None,
        ge=0,
        le=27,
        description="BCM pin of a push button: a short press starts or ends a session, a long "
        "press starts a new one",
    )
    pin_factory: Literal["auto", "lgpio", "rpigpio", "native", "mock"] = Field(
        "auto",
        description="gpiozero pin library; auto picks the best installed (lgpio on Pi OS "
        "Bookworm); mock runs without GPIO hardware",
    )
    outputs_active_high: bool = Field(
        True, description="LEDs and buzzer are on when their pin is high (false: wired to 3V3)"
    )
    reject_active_high: bool = Field(
        True, description="The reject output is on when high (false for active-low relay boards)"
    )
    good_read_led_ms: int = Field(200, ge=1, le=10_000, description="Good-read LED on time")
    no_read_led_ms: int = Field(1000, ge=1, le=10_000, description="No-read LED on time")
    good_read_beep: BeepPattern = Field(
        (60, 0, 1), description="Buzzer after a good read: [on ms, off ms, repetitions]"
    )
    no_read_beep: BeepPattern = Field(
        (150, 100, 2), description="Buzzer after a no-read: [on ms, off ms, repetitions]"
    )
    alert_beep: BeepPattern = Field(
        (400, 150, 3),
        description="Buzzer (and no-read LED) for an expired or recalled item: "
        "[on ms, off ms, repetitions]",
    )
    trigger_pull_up: bool = Field(
        True,
        description="Pull the photo-eye input up and trigger on low (NPN/sinking sensors, "
        "dry contacts); false: pull down and trigger on high (PNP through an optocoupler)",
    )
    trigger_debounce_ms: int = Field(
        20,
        ge=0,
        le=10_000,
        description="A photo-eye activation counts only after this long without any edge: "
        "the chatter at both ends of an item opens one read window",
    )
    button_pull_up: bool = Field(True, description="The session button connects its pin to GND")
    button_debounce_ms: int = Field(
        50, ge=0, le=1000, description="Presses shorter than this are contact bounce"
    )
    long_press_s: float = Field(
        2.0, gt=0, le=30, description="Holding the button this long starts a new session"
    )
    reject_on: list[RejectReason] = Field(
        default_factory=lambda: list(REJECT_REASONS),
        description="Which outcomes pulse the reject output",
    )
    reject_pulse_ms: int = Field(200, ge=1, le=10_000, description="Reject output pulse length")
    reject_delay_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="Belt travel time to the gate: from the photo-eye trigger (cameras with "
        "trigger = gpio), else from the read, to the pulse",
    )
    reject_deadline_ms: int = Field(
        3000,
        ge=0,
        le=120_000,
        description="A reject due longer ago than this is skipped and counted as missed "
        "(the item has passed the gate)",
    )

    @field_validator("good_read_beep", "no_read_beep", "alert_beep")
    @classmethod
    def _beep_pattern(cls, value: BeepPattern) -> BeepPattern:
        on_ms, off_ms, count = value
        if not (1 <= on_ms <= 10_000 and 0 <= off_ms <= 10_000 and 0 <= count <= 20):
            raise ValueError(
                f"beep pattern {list(value)!r}: expected [on ms 1-10000, off ms 0-10000, "
                "repetitions 0-20] (repetitions 0 is silent)"
            )
        return value

    @model_validator(mode="after")
    def _distinct_pins(self) -> GpioConfig:
        seen: dict[int, str] = {}
        for name in self.pin_names:
            pin = getattr(self, name)
            if pin is None:
                continue
            if pin in seen:
                raise ValueError(
                    f"GPIO{pin} is given to both {seen[pin]} and {name}; each function needs "
                    "its own pin"
                )
            seen[pin] = name
        return self

    @property
    def pin_names(self) -> tuple[str, ...]:
        return (
            "good_read",
            "no_read",
            "buzzer",
            "trigger_input",
            "reject_output",
            "session_button",
        )

    @property
    def in_use(self) -> bool:
        """True when any pin is configured (else the daemon does not touch GPIO)."""
        return any(getattr(self, name) is not None for name in self.pin_names)
