"""GPIO feedback and conveyor I/O on gpiozero's MockFactory: the pins a wiring loom would see."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from gpiozero import LED, Device
from gpiozero.exc import BadPinFactory, GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from scanstation.config import ConfigError, GpioConfig, parse_config
from scanstation.hw.gpio import (
    EdgeDebouncer,
    GpioError,
    GpioIO,
    PressTracker,
    _gpio_hint,
    is_no_read,
    reject_reasons,
)
from scanstation.model import Capture, CaptureStatus, CaptureType, Scan
from scanstation.pipeline import Pipeline
from scanstation.store import Store

GOOD, NOREAD, BUZZER, EYE, REJECT, BUTTON = 17, 27, 22, 23, 24, 25


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = saved


def gpio_config(**overrides: Any) -> GpioConfig:
    data: dict[str, Any] = {
        "good_read": GOOD,
        "no_read": NOREAD,
        "buzzer": BUZZER,
        "trigger_input": EYE,
        "reject_output": REJECT,
        "session_button": BUTTON,
        "good_read_led_ms": 60,
        "no_read_led_ms": 60,
        "good_read_beep": [30, 0, 1],
        "no_read_beep": [30, 30, 2],
        "alert_beep": [30, 30, 3],
        "reject_pulse_ms": 60,
        "button_debounce_ms": 20,
        "long_press_s": 0.15,
        **overrides,
    }
    return parse_config({"gpio": data}, "<test>", environ={}).gpio


@pytest.fixture
async def make_io(factory: MockFactory) -> Any:
    made: list[GpioIO] = []

    def make(**overrides: Any) -> GpioIO:
        io = GpioIO(gpio_config(**overrides))
        made.append(io)
        return io

    yield make
    for io in made:
        io.close()


def pin(factory: MockFactory, number: int) -> MockPin:
    return factory.pin(number)  # type: ignore[no-any-return]


def levels(p: MockPin) -> list[bool]:
    return [s.state for s in p.states]


def on_durations(p: MockPin) -> list[float]:
    """How long the pin stayed high each time (seconds), from the recorded transitions."""
    durations = []
    for before, after in zip(p.states, p.states[1:], strict=False):
        if before.state and not after.state:
            durations.append(after.timestamp)
    return durations


async def settle(p: MockPin, count: int, timeout: float = 2.0) -> None:
    """Wait until the pin has gone through `count` recorded states (blinks run in threads)."""
    deadline = time.monotonic() + timeout
    while len(p.states) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)


def make_capture(**overrides: Any) -> Capture:
    fields: dict[str, Any] = {
        "id": 1,
        "public_id": "Cap2345678923456789abc",
        "session_public_id": "Ses2345678923456789abc",
        "status": CaptureStatus.COMPLETED,
        "capture_type": CaptureType.BARCODE,
        "raw_value": "0109506000134352\x1d10ABC123",
        "gtin": "09506000134352",
        "symbology": "DataMatrix",
        "symbology_identifier": "]d2",
        "source": "cam0",
        "error_message": "",
        "created": time.time(),
        "processed_at": time.time(),
        "gs1_dl_data": {"01": "09506000134352", "10": "ABC123"},
        "product_public_id": "",
        "product_name": "",
        "uploaded_image_key": "",
        "qr_analysis": None,
        "metadata": {},
        "checks": {},
        "revision": 1,
    }
    fields.update(overrides)
    return Capture(**fields)


NO_READ_FRAME = {"noread": "true", "trigger": "gpio", "window_ms": "1000"}


# ---- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, set()),
        ({"status": CaptureStatus.NOT_FOUND}, {"not_found"}),
        ({"status": CaptureStatus.FAILED, "error_message": "bad check digit"}, {"failed"}),
        (
            {
                "status": CaptureStatus.NOT_FOUND,
                "capture_type": CaptureType.IMAGE,
                "raw_value": "",
                "metadata": NO_READ_FRAME,
            },
            {"no_read"},
        ),
        ({"checks": {"expired": True, "expiry": "2024-01-01", "not_for_sale": True}}, {"expired"}),
        ({"checks": {"expired": False, "recalled": True, "not_for_sale": True}}, {"recalled"}),
        (
            {"status": CaptureStatus.NOT_FOUND, "checks": {"expired": True, "recalled": True}},
            {"not_found", "expired", "recalled"},
        ),
    ],
)
def test_reject_reasons_name_every_cause(overrides: dict[str, Any], expected: set[str]) -> None:
    assert reject_reasons(make_capture(**overrides)) == frozenset(expected)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [(NO_READ_FRAME, True), ({"noread": "TRUE"}, True), ({"noread": "false"}, False), ({}, False)],
)
def test_is_no_read_reads_the_camera_metadata(metadata: dict[str, str], expected: bool) -> None:
    assert is_no_read(metadata) is expected


def test_edge_debouncer_counts_one_trigger_per_item() -> None:
    debounce = EdgeDebouncer(0.020)
    # Beam broken with chatter, item passes for 300 ms, beam restored with chatter, next item.
    edges = [
        (0.000, True),
        (0.002, False),
        (0.004, True),
        (0.300, False),
        (0.301, True),
        (0.303, False),
        (0.800, True),
    ]
    assert [t for t, active in edges if debounce.edge(t, active)] == [0.000, 0.800]
    releases = EdgeDebouncer(0.020)
    acted = [
        t
        for t, active in edges
        if (releases.edge(t, active) if active else releases.release(t)) and not active
    ]
    assert acted == [0.300]  # the beam restored once, not the chatter


def test_press_tracker_tells_short_long_and_bounce() -> None:
    presses = PressTracker(0.05)
    presses.pressed(0.0)
    assert presses.released(0.01) is None  # bounce
    presses.pressed(0.02)
    assert presses.released(0.3) == "short"
    presses.pressed(1.0)
    assert presses.held() == "long"
    assert presses.held() is None  # once per press
    assert presses.released(3.5) is None  # the long press already acted
    assert presses.released(3.6) is None  # a release without a press


# ---- config ----------------------------------------------------------------------------------


def test_gpio_config_refuses_a_pin_used_twice() -> None:
    with pytest.raises(ConfigError, match="GPIO17 is given to both good_read and reject_output"):
        parse_config({"gpio": {"good_read": 17, "reject_output": 17}}, "<test>", environ={})


@pytest.mark.parametrize("pattern", [[0, 0, 1], [50, -1, 1], [50, 0, 21]])
def test_gpio_config_refuses_bad_beep_patterns(pattern: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"gpio\.good_read_beep"):
        parse_config({"gpio": {"good_read_beep": pattern}}, "<test>", environ={})


def test_gpio_config_unset_means_unused() -> None:
    assert GpioConfig().in_use is False
    assert gpio_config().in_use is True


def test_gpio_env_override_sets_a_pattern() -> None:
    config = parse_config({}, "<test>", environ={"SCANSTATION_GPIO_GOOD_READ_BEEP": "[80, 0, 2]"})
    assert config.gpio.good_read_beep == (80, 0, 2)


# ---- outputs ---------------------------------------------------------------------------------


async def test_good_read_flashes_the_led_and_beeps_once(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()
    io.good_read(Scan(source="gun1", raw_value="4006381333931"))
    led, buzzer = pin(factory, GOOD), pin(factory, BUZZER)
    await settle(led, 3)
    await settle(buzzer, 3)
    assert levels(led) == [False, True, False]
    assert levels(buzzer) == [False, True, False]
    assert on_durations(led) == [pytest.approx(0.060, abs=0.03)]
    assert on_durations(buzzer) == [pytest.approx(0.030, abs=0.03)]
    assert levels(pin(factory, NOREAD)) == [False]


async def test_no_read_lights_the_no_read_led_and_beeps_twice(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()
    io.no_read()
    led, buzzer = pin(factory, NOREAD), pin(factory, BUZZER)
    await settle(buzzer, 5)
    assert levels(led) == [False, True, False]
    assert levels(buzzer) == [False, True, False, True, False]
    assert on_durations(buzzer) == [pytest.approx(0.03, abs=0.03)] * 2
    assert levels(pin(factory, GOOD)) == [False]


async def test_active_low_outputs_idle_high(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(outputs_active_high=False, reject_active_high=False)
    assert pin(factory, GOOD).state is True
    assert pin(factory, REJECT).state is True
    io.good_read()
    await settle(pin(factory, GOOD), 4)
    # Floating input, idle (high), on (low), off (high).
    assert levels(pin(factory, GOOD)) == [False, True, False, True]


async def test_silent_beep_pattern_leaves_the_buzzer_alone(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(good_read_beep=[50, 0, 0])
    io.good_read()
    await asyncio.sleep(0.1)
    assert levels(pin(factory, BUZZER)) == [False]


async def test_feedback_emit_beeps_after_the_capture_is_durable(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()
    durable: list[str] = []
    feedback_before: list[int] = []

    async def emit(scan: Scan) -> Capture:
        # No feedback for this scan may play while its capture is being stored.
        feedback_before.append(io.counters.good_reads + io.counters.no_reads)
        durable.append(scan.raw_value)
        return make_capture(raw_value=scan.raw_value)

    wrapped = io.feedback_emit(emit)
    capture = await wrapped(Scan(source="gun1", raw_value="4006381333931"))
    assert capture.raw_value == "4006381333931"
    assert durable == ["4006381333931"]
    await settle(pin(factory, GOOD), 3)
    assert levels(pin(factory, GOOD)) == [False, True, False]

    await wrapped(
        Scan(source="cam0", raw_value="", capture_type=CaptureType.IMAGE, metadata=NO_READ_FRAME)
    )
    await settle(pin(factory, NOREAD), 3)
    assert levels(pin(factory, NOREAD)) == [False, True, False]
    assert (io.counters.good_reads, io.counters.no_reads) == (1, 1)
    assert feedback_before == [0, 1]


async def test_feedback_emit_signals_a_refused_capture_as_no_read(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()

    async def disk_full(scan: Scan) -> Capture:
        raise OSError("only 12 MB free")

    with pytest.raises(OSError, match="12 MB"):
        await io.feedback_emit(disk_full)(Scan(source="gun1", raw_value="4006381333931"))
    await settle(pin(factory, NOREAD), 3)
    assert levels(pin(factory, NOREAD)) == [False, True, False]
    assert levels(pin(factory, GOOD)) == [False]


# ---- reject output and alerts ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"status": CaptureStatus.NOT_FOUND},
        {"status": CaptureStatus.FAILED, "error_message": "bad check digit"},
        {"status": CaptureStatus.NOT_FOUND, "raw_value": "", "metadata": NO_READ_FRAME},
        {"checks": {"expired": True, "not_for_sale": True}},
        {"checks": {"recalled": True, "not_for_sale": True}},
    ],
)
async def test_on_capture_pulses_the_reject_output(
    factory: MockFactory, make_io: Callable[..., GpioIO], overrides: dict[str, Any]
) -> None:
    io = make_io()
    await io.on_capture(make_capture(**overrides))
    reject = pin(factory, REJECT)
    await settle(reject, 3)
    assert levels(reject) == [False, True, False]
    assert on_durations(reject) == [pytest.approx(0.060, abs=0.03)]
    assert io.counters.rejects == 1


async def test_on_capture_lets_a_good_item_pass(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()
    await io.on_capture(make_capture(product_public_id="Prod345678923456789abc"))
    await asyncio.sleep(0.1)
    assert levels(pin(factory, REJECT)) == [False]
    assert io.counters.rejects == 0


async def test_reject_on_limits_the_reasons(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(reject_on=["no_read"])
    await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND))
    await io.on_capture(make_capture(checks={"recalled": True}))
    await asyncio.sleep(0.1)
    assert levels(pin(factory, REJECT)) == [False]
    await io.on_capture(make_capture(metadata=NO_READ_FRAME, status=CaptureStatus.NOT_FOUND))
    await settle(pin(factory, REJECT), 3)
    assert levels(pin(factory, REJECT)) == [False, True, False]


async def test_reject_waits_for_the_item_to_reach_the_gate(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(reject_delay_ms=150)
    read_at = time.time()
    await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND, created=read_at))
    reject = pin(factory, REJECT)
    await asyncio.sleep(0.1)
    assert levels(reject) == [False]
    await settle(reject, 3)
    assert levels(reject) == [False, True, False]
    rose_after = reject.states[1].timestamp  # seconds from clear_states (at the pin's creation)
    assert rose_after >= 0.14


async def test_reject_is_timed_from_the_photo_eye_trigger(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    # A no-read is stored when its read window closes, 300 ms after the carton broke the beam;
    # the gate is 400 ms of belt from the photo-eye: the pulse comes 100 ms after the capture.
    io = make_io(reject_delay_ms=400)
    eye, reject = pin(factory, EYE), pin(factory, REJECT)
    eye.drive_low()
    triggered_at = time.monotonic()
    await asyncio.sleep(0.3)
    no_read = make_capture(
        status=CaptureStatus.NOT_FOUND,
        raw_value="",
        capture_type=CaptureType.IMAGE,
        metadata=NO_READ_FRAME,
        created=time.time(),
    )
    await io.on_capture(no_read)
    while len(reject.states) < 2 and time.monotonic() - triggered_at < 2:
        await asyncio.sleep(0.002)
    assert time.monotonic() - triggered_at == pytest.approx(0.4, abs=0.05)
    assert io.reference_time(no_read) == pytest.approx(no_read.created - 0.3, abs=0.05)


def test_reference_time_without_a_trigger_is_the_read(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()
    pin(factory, EYE).drive_low()  # a trigger, but the capture is not from a gpio window
    capture = make_capture(created=time.time() + 0.5, metadata={"content_type": "GS1"})
    assert io.reference_time(capture) == capture.created
    gun = make_capture(created=time.time() - 60, metadata={"trigger": "gpio"})
    assert io.reference_time(gun) == gun.created  # the trigger came after it


async def test_schedule_reject_serves_other_rejecters(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    # An output's match code rejects a good read (wrong product on this line).
    io = make_io()
    wrong = make_capture(product_public_id="Prod345678923456789abc")
    assert io.schedule_reject(wrong, ["match: GTIN prefix 400 expected"]) is True
    await settle(pin(factory, REJECT), 3)
    assert levels(pin(factory, REJECT)) == [False, True, False]
    no_gate = GpioIO(GpioConfig(good_read=5))
    try:
        assert no_gate.schedule_reject(wrong, ["match"]) is False
    finally:
        no_gate.close()


async def test_reject_past_its_deadline_is_counted_as_missed(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(reject_deadline_ms=500)
    await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND, created=time.time() - 2))
    await asyncio.sleep(0.05)
    assert levels(pin(factory, REJECT)) == [False]
    assert (io.counters.rejects, io.counters.missed_rejects) == (0, 1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"revision": 2},  # a retry, long after the item left
        {"created": time.time() - 3600},  # resumed after a restart
    ],
)
async def test_late_captures_move_no_pins(
    factory: MockFactory, make_io: Callable[..., GpioIO], overrides: dict[str, Any]
) -> None:
    io = make_io()
    await io.on_capture(
        make_capture(status=CaptureStatus.NOT_FOUND, checks={"recalled": True}, **overrides)
    )
    await asyncio.sleep(0.05)
    assert [levels(pin(factory, n)) for n in (REJECT, NOREAD, BUZZER)] == [[False]] * 3


async def test_expired_item_plays_the_alert(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io()
    expired = make_capture(
        product_public_id="Prod345678923456789abc",
        checks={"expired": True, "expiry": "2024-01-01", "not_for_sale": True},
    )
    await io.on_capture(expired)
    await settle(pin(factory, BUZZER), 7)
    assert levels(pin(factory, BUZZER)) == [False, True, False, True, False, True, False]
    assert levels(pin(factory, NOREAD)) == [False, True, False, True, False, True, False]
    assert io.counters.alerts == 1


async def test_close_switches_a_pulsing_reject_off(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(reject_pulse_ms=5000)
    await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND))
    await asyncio.sleep(0.02)
    assert pin(factory, REJECT).state is True
    io.close()
    assert levels(pin(factory, REJECT)) == [False, True, False]


async def test_close_cancels_a_reject_not_yet_due(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    io = make_io(reject_delay_ms=100)
    await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND))
    io.close()
    await asyncio.sleep(0.2)
    assert levels(pin(factory, REJECT)) == [False]


# ---- photo-eye -------------------------------------------------------------------------------


async def test_photo_eye_triggers_once_per_item_despite_chatter(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    triggered: list[float] = []
    io = make_io(trigger_debounce_ms=30)
    io.trigger_listeners.append(lambda: triggered.append(time.monotonic()))
    eye = pin(factory, EYE)
    assert eye.state is True  # pulled up: an NPN sensor pulls it low when the beam breaks

    eye.drive_low()
    eye.drive_high()  # contact chatter within microseconds
    eye.drive_low()
    await asyncio.sleep(0.05)
    eye.drive_high()  # item leaves the beam
    await asyncio.sleep(0.05)
    eye.drive_low()  # the next item
    assert len(triggered) == 2
    assert (io.counters.triggers, io.counters.ignored_edges) == (2, 1)


async def test_photo_eye_clearing_calls_the_release_listeners_once(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    events: list[str] = []
    io = make_io(trigger_debounce_ms=30)
    io.trigger_listeners.append(lambda: events.append("trigger"))
    io.release_listeners.append(lambda: events.append("release"))
    eye = pin(factory, EYE)
    eye.drive_low()  # the beam breaks
    eye.drive_high()  # chatter: not a release
    eye.drive_low()
    await asyncio.sleep(0.05)
    eye.drive_high()  # the object has passed
    eye.drive_low()  # chatter at the far end: neither a trigger nor a release
    eye.drive_high()
    assert events == ["trigger", "release"]


async def test_photo_eye_pull_down_triggers_on_high(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    triggered: list[int] = []
    io = make_io(trigger_pull_up=False)
    io.trigger_listeners.append(lambda: triggered.append(1))
    eye = pin(factory, EYE)
    assert eye.state is False
    eye.drive_high()
    assert triggered == [1]


async def test_photo_eye_listener_failure_does_not_stop_the_others(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    triggered: list[str] = []

    def broken() -> None:
        raise RuntimeError("camera gone")

    io = make_io()
    io.trigger_listeners.extend([broken, lambda: triggered.append("cam1")])
    pin(factory, EYE).drive_low()
    assert triggered == ["cam1"]


# ---- session button --------------------------------------------------------------------------


class Sessions:
    """Stands in for the lead's session callbacks: records which ran, and on which thread."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.called = asyncio.Event()

    async def toggle(self) -> None:
        self.calls.append("toggle")
        self.threads.add(threading.get_ident())
        self.called.set()

    async def new(self) -> None:
        self.calls.append("new")
        self.threads.add(threading.get_ident())
        self.called.set()


async def test_short_press_toggles_the_session_on_the_loop(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    sessions = Sessions()
    io = make_io()
    io.toggle_session, io.new_session = sessions.toggle, sessions.new
    button = pin(factory, BUTTON)
    button.drive_low()
    await asyncio.sleep(0.05)
    button.drive_high()
    await asyncio.wait_for(sessions.called.wait(), 1)
    await io.idle()
    assert sessions.calls == ["toggle"]
    assert sessions.threads == {threading.get_ident()}


async def test_long_press_starts_a_new_session_and_nothing_else(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    sessions = Sessions()
    io = make_io(long_press_s=0.1)
    io.toggle_session, io.new_session = sessions.toggle, sessions.new
    button = pin(factory, BUTTON)
    button.drive_low()
    await asyncio.wait_for(sessions.called.wait(), 2)  # fires while still held
    assert sessions.calls == ["new"]
    await asyncio.sleep(0.05)
    button.drive_high()
    await asyncio.sleep(0.05)
    await io.idle()
    assert sessions.calls == ["new"]
    assert sessions.threads == {threading.get_ident()}
    assert (io.counters.short_presses, io.counters.long_presses) == (0, 1)


async def test_button_bounce_is_not_a_press(
    factory: MockFactory, make_io: Callable[..., GpioIO]
) -> None:
    sessions = Sessions()
    io = make_io(button_debounce_ms=50)
    io.toggle_session, io.new_session = sessions.toggle, sessions.new
    button = pin(factory, BUTTON)
    button.drive_low()
    button.drive_high()
    await asyncio.sleep(0.05)
    await io.idle()
    assert sessions.calls == []


async def test_a_failing_session_callback_is_logged_not_raised(
    factory: MockFactory, make_io: Callable[..., GpioIO], caplog: pytest.LogCaptureFixture
) -> None:
    async def no_store() -> None:
        raise RuntimeError("the store is not open")

    io = make_io()
    io.toggle_session = no_store
    button = pin(factory, BUTTON)
    button.drive_low()
    await asyncio.sleep(0.05)
    button.drive_high()
    await asyncio.sleep(0.02)
    await io.idle()
    assert "session button short press failed: the store is not open" in caplog.text


# ---- lifecycle -------------------------------------------------------------------------------


async def test_only_configured_pins_are_claimed(factory: MockFactory) -> None:
    io = GpioIO(GpioConfig(good_read=GOOD))
    try:
        assert io.state["pins"] == ["good_read"]
        assert (io.no_read_led, io.buzzer, io.reject, io.photo_eye, io.button) == (None,) * 5
        io.no_read()  # no LED or buzzer wired: counted, nothing else
        await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND))
        assert (io.counters.no_reads, io.counters.rejects) == (1, 0)
    finally:
        io.close()


def test_a_pin_in_use_is_reported_by_name(factory: MockFactory) -> None:
    other = LED(GOOD)
    try:
        with pytest.raises(GpioError, match=r"\[gpio\] good_read = 17: cannot use GPIO17"):
            GpioIO(gpio_config())
        # Whatever was opened before the failure was released again.
        LED(NOREAD).close()
    finally:
        other.close()


async def test_run_binds_the_loop_and_releases_pins_when_cancelled(factory: MockFactory) -> None:
    io = GpioIO(gpio_config(reject_pulse_ms=5000))
    task = asyncio.create_task(io.run())
    await asyncio.sleep(0.01)
    await io.on_capture(make_capture(status=CaptureStatus.NOT_FOUND))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert pin(factory, REJECT).state is False
    LED(REJECT).close()  # the pin is free again


def test_mock_pin_factory_from_config() -> None:
    io = GpioIO(GpioConfig(good_read=GOOD, pin_factory="mock"))
    try:
        io.good_read()
        assert io.counters.good_reads == 1
    finally:
        io.close()


def test_gpio_io_made_outside_a_loop_ignores_presses_until_run(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sessions: list[str] = []

    async def toggle() -> None:
        sessions.append("toggle")

    io = GpioIO(gpio_config(), toggle_session=toggle)
    try:
        button = pin(factory, BUTTON)
        button.drive_low()
        time.sleep(0.03)
        button.drive_high()
        assert sessions == []
        assert "before the daemon was running" in caplog.text
    finally:
        io.close()


def test_counters_start_at_zero(factory: MockFactory) -> None:
    io = GpioIO(gpio_config())
    try:
        assert io.state == {
            "pins": [
                "good_read",
                "no_read",
                "buzzer",
                "trigger_input",
                "reject_output",
                "session_button",
            ],
            "good_reads": 0,
            "no_reads": 0,
            "alerts": 0,
            "rejects": 0,
            "missed_rejects": 0,
            "triggers": 0,
            "ignored_edges": 0,
            "short_presses": 0,
            "long_presses": 0,
        }
    finally:
        io.close()


def test_replace_keeps_capture_helper_honest() -> None:
    # make_capture builds a real Capture: every field of the model is given.
    capture = make_capture()
    assert replace(capture, revision=2).revision == 2


def test_gpio_doctests_pass() -> None:
    import doctest

    import scanstation.hw.gpio

    result = doctest.testmod(scanstation.hw.gpio)
    assert (result.failed, result.attempted > 0) == (0, True)


async def test_gpio_wired_into_a_real_pipeline(
    factory: MockFactory, pipeline: Pipeline, store: Store
) -> None:
    # As app.py wires it: feedback around the source's emit, rejects on the finished hook.
    await store.upsert_products([{"gtin": "04006381333931", "name": "STABILO BOSS"}])
    io = GpioIO(gpio_config(good_read_beep=[20, 0, 1]))
    try:
        pipeline.on_finished.append(io.on_capture)
        emit = io.feedback_emit(pipeline.ingest)
        known = await emit(Scan(source="gun1", raw_value="4006381333931"))
        unknown = await emit(Scan(source="gun1", raw_value="5901234123457"))
        await pipeline.idle()
        finished = {
            c.public_id: c.status for c in await store.get_captures_by_id([known.id, unknown.id])
        }
        assert finished == {
            known.public_id: CaptureStatus.COMPLETED,
            unknown.public_id: CaptureStatus.NOT_FOUND,
        }
        await settle(pin(factory, REJECT), 3)
        assert levels(pin(factory, REJECT)) == [False, True, False]  # only the unknown one
        assert (io.counters.good_reads, io.counters.rejects) == (2, 1)
    finally:
        io.close()


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (BadPinFactory("Unable to load any default pin factory!"), "install python3-lgpio"),
        (GPIOPinInUse("pin GPIO17 is already in use"), "already uses the pin"),
        (PermissionError("/dev/gpiochip0"), "in the gpio group"),
    ],
)
def test_gpio_errors_say_what_to_do(error: Exception, hint: str) -> None:
    assert hint in _gpio_hint(error)
