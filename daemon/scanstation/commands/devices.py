"""`scanstation devices` and `scanstation hid-replay`: find, record and debug scanners.

``devices`` lists what is plugged in, read from sysfs so it needs no permissions: input
devices (marking the ones that look like barcode scanners), cameras and serial ports.
``devices --record DEVICE`` writes a scanner's raw key events as JSON lines, and
``hid-replay FILE --layout de`` decodes such a recording into the scans it contains, so a
scanner set-up (layout, GS, prefix/suffix, terminator) can be debugged without the daemon.
``devices --calibrate DEVICE`` reads one scan of the printed calibration barcode
(docs/calibration-barcode.pdf) and prints the ``layout`` setting that decodes it exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from scanstation.barcode.scantext import ScanText
from scanstation.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandLineError
from scanstation.hw import keymaps
from scanstation.hw.keymaps import EV_KEY, KeyEvent
from scanstation.sources.hid import (
    DecoderSettings,
    DeviceFactory,
    HidError,
    decode_recording,
    looks_like_scanner,
    open_evdev,
)


class RecordingError(CommandLineError, ValueError):
    """A recording line that is not an event; the message names the line and what was expected."""


# --- Listing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputDeviceInfo:
    """One /dev/input/event* node, as sysfs describes it."""

    path: str
    """The event node, e.g. /dev/input/event3."""
    by_id: list[str]
    """Stable /dev/input/by-id links to it (use one as a source's ``device``)."""
    name: str
    """The name the device reports, e.g. "Honeywell Imaging & Mobility 1900"."""
    vendor: str
    """USB vendor id (4 hex digits), or ""."""
    product: str
    """USB product id (4 hex digits), or ""."""
    keyboard: bool
    """True when it has letter, digit and Enter keys (a keyboard or a keyboard-wedge gun)."""
    scanner: bool
    """True when its name or vendor id says barcode scanner."""


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """One V4L2 video node."""

    path: str
    """e.g. /dev/video0."""
    name: str
    """The name the driver gives."""
    by_id: list[str]
    """Stable /dev/v4l/by-id links."""


@dataclass(frozen=True, slots=True)
class SerialPortInfo:
    """One serial port a scanner may sit on."""

    path: str
    """e.g. /dev/ttyACM0."""
    by_id: list[str]
    """Stable /dev/serial/by-id links (use one as a source's ``port``)."""
    driver: str
    """Kernel driver, e.g. cdc_acm, ftdi_sio, pl2303, or ""."""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _links_to(root: Path, folder: str, target_name: str) -> list[str]:
    """The symlinks in ``root/folder`` whose target's file name is ``target_name``."""
    try:
        links = sorted((root / folder).iterdir())
    except OSError:
        return []
    out = []
    for link in links:
        with contextlib.suppress(OSError):
            if link.is_symlink() and Path(str(link.readlink())).name == target_name:
                out.append("/" + str(link.relative_to(root)))
    return out


def _bits(hex_words: str) -> set[int]:
    """The bit numbers set in a sysfs bitmap ("120013 0 e" style: most significant word first).

    >>> sorted(_bits("1 2"))[:2]
    [1, 64]
    """
    bits: set[int] = set()
    words = hex_words.split()
    for index, word in enumerate(reversed(words)):
        value = int(word, 16)
        for bit in range(64):
            if value >> bit & 1:
                bits.add(index * 64 + bit)
    return bits


_KEYBOARD_KEYS = {keymaps.KEY_A, keymaps.KEY_Z, keymaps.KEY_1, keymaps.KEY_0, keymaps.KEY_ENTER}


def list_input_devices(root: Path = Path("/")) -> list[InputDeviceInfo]:
    """Input event devices from sysfs (``root`` is "/" except in tests)."""
    out = []
    for node in sorted((root / "sys/class/input").glob("event*"), key=lambda p: int(p.name[5:])):
        device = node / "device"
        name = _read(device / "name")
        keys = _bits(_read(device / "capabilities/key") or "0")
        links = _links_to(root, "dev/input/by-id", node.name)
        vendor = _read(device / "id/vendor")
        vendor_id = int(vendor, 16) if re.fullmatch(r"[0-9a-fA-F]{1,4}", vendor) else None
        out.append(
            InputDeviceInfo(
                path=f"/dev/input/{node.name}",
                by_id=links,
                name=name,
                vendor=vendor,
                product=_read(device / "id/product"),
                keyboard=keys >= _KEYBOARD_KEYS,
                scanner=looks_like_scanner(" ".join([name, *links]), vendor_id),
            )
        )
    return out


def list_cameras(root: Path = Path("/")) -> list[CameraInfo]:
    """V4L2 video nodes from sysfs."""
    nodes = sorted(
        (root / "sys/class/video4linux").glob("video*"), key=lambda p: int(p.name[5:] or 0)
    )
    return [
        CameraInfo(
            path=f"/dev/{node.name}",
            name=_read(node / "name"),
            by_id=_links_to(root, "dev/v4l/by-id", node.name),
        )
        for node in nodes
    ]


def list_serial_ports(root: Path = Path("/")) -> list[SerialPortInfo]:
    """USB (CDC-ACM, USB-serial) and on-board UART ports from sysfs."""
    out = []
    for pattern in ("ttyACM*", "ttyUSB*", "ttyAMA*"):
        for node in sorted((root / "sys/class/tty").glob(pattern)):
            driver_link = node / "device/driver"
            driver = ""
            with contextlib.suppress(OSError):
                driver = Path(str(driver_link.readlink())).name
            out.append(
                SerialPortInfo(
                    path=f"/dev/{node.name}",
                    by_id=_links_to(root, "dev/serial/by-id", node.name),
                    driver=driver,
                )
            )
    return out


def _print_table(
    inputs: list[InputDeviceInfo],
    cameras: list[CameraInfo],
    ports: list[SerialPortInfo],
    out: TextIO,
    show_all: bool,
) -> None:
    shown = [d for d in inputs if show_all or d.keyboard or d.scanner]
    out.write("Input devices (HID barcode guns are keyboards):\n")
    if not shown:
        out.write("  none found\n")
    for d in shown:
        mark = "scanner?" if d.scanner else ("keyboard" if d.keyboard else "other")
        ids = f" {d.vendor}:{d.product}" if d.vendor else ""
        out.write(f"  {d.path:<20} {mark:<9} {d.name!r}{ids}\n")
        for link in d.by_id:
            out.write(f"      {link}\n")
    out.write("Cameras:\n")
    if not cameras:
        out.write("  none found\n")
    for c in cameras:
        out.write(f"  {c.path:<20} {c.name!r}\n")
        for link in c.by_id:
            out.write(f"      {link}\n")
    out.write("Serial ports:\n")
    if not ports:
        out.write("  none found\n")
    for p in ports:
        out.write(f"  {p.path:<20} {p.driver}\n")
        for link in p.by_id:
            out.write(f"      {link}\n")
    if any(d.scanner for d in inputs):
        out.write(
            "\nUse a /dev/input/by-id/…-event-kbd link as the hid source's device; record "
            "a scan with: scanstation devices --record LINK > scan.jsonl\n"
        )


# --- Recording ---------------------------------------------------------------------------


async def record(
    path: str,
    out: TextIO,
    *,
    grab: bool = True,
    duration: float | None = None,
    open_device: DeviceFactory = open_evdev,
    log: TextIO = sys.stderr,
) -> int:
    """Write the key events of ``path`` to ``out`` as JSON lines until ``duration`` passes.

    ``t`` is seconds since the first event (kernel timestamps, so the gaps are exact).
    Returns the number of events written.
    """
    device = open_device(path)
    written = 0
    try:
        if grab:
            device.grab()
        log.write(
            f"Recording {device.name!r} ({path}){', grabbed' if grab else ''}: scan your codes"
            f"{'' if duration else ', then press Ctrl+C'}.\n"
        )
        log.flush()
        first: float | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                async for event in device.async_read_loop():
                    if event.type != EV_KEY:
                        continue
                    stamp = event.timestamp()
                    first = stamp if first is None else first
                    row = {
                        "t": round(stamp - first, 6),
                        "type": event.type,
                        "code": event.code,
                        "value": event.value,
                    }
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    written += 1
    finally:
        with contextlib.suppress(OSError):
            if grab:
                device.ungrab()
        with contextlib.suppress(OSError):
            device.close()
    return written


# --- Calibrating the layout ----------------------------------------------------------------

CALIBRATION_TEXT = "QWYZAMqwyzam1290-=[];'\\,./`~!@#$%^&*()_+{}:\"|<>?"
"""What the calibration barcode (Code 128, docs/calibration-barcode.pdf) holds: the letters
that QWERTY, QWERTZ and AZERTY put elsewhere, digits (Shift on AZERTY) and every ASCII
punctuation mark, which layouts scatter over Shift, AltGr and dead keys."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """Which layouts decode a calibration scan exactly, best first, or the nearest ones."""

    exact: list[str]
    """Layouts (as xkb spells them) that decode the scan to CALIBRATION_TEXT."""
    nearest: list[tuple[str, str]]
    """When none does: (layout, what it decodes) for the closest few."""


def _preference(name: str) -> tuple[int, int, str]:
    classic = name in keymaps.CLASSIC_LAYOUTS or name == "gb"
    return (0 if classic else 1, name.count("("), name)


def calibrate_layouts(events: list[KeyEvent]) -> Calibration:
    """Decode a scan of the calibration barcode on every known layout."""
    decoded: dict[str, str] = {}
    aliases = set(keymaps.ALIASES)
    for name in keymaps.layout_names():
        if name in aliases:
            continue
        settings = DecoderSettings(layout=name, inter_key_timeout=10.0)
        scans = [o for o in decode_recording(events, settings) if isinstance(o, ScanText)]
        decoded[name] = scans[0].raw_value if scans else ""
    exact = sorted((n for n, text in decoded.items() if text == CALIBRATION_TEXT), key=_preference)
    if exact:
        return Calibration(exact=exact, nearest=[])
    ranked = sorted(
        decoded.items(),
        key=lambda item: (
            -difflib.SequenceMatcher(None, item[1], CALIBRATION_TEXT).ratio(),
            _preference(item[0]),
        ),
    )
    return Calibration(exact=[], nearest=ranked[:5])


async def read_one_scan(
    path: str,
    *,
    seconds: float = 60.0,
    open_device: DeviceFactory = open_evdev,
    log: TextIO = sys.stderr,
) -> list[KeyEvent]:
    """The key events of ``path`` up to the first Enter (grabbed, so they reach nothing else)."""
    device = open_device(path)
    events: list[KeyEvent] = []
    try:
        device.grab()
        log.write(
            f"Scan the calibration barcode (docs/calibration-barcode.pdf) with {device.name!r}"
            f" ({path}) within {seconds:.0f} s.\n"
        )
        log.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for event in device.async_read_loop():
                    if event.type != EV_KEY:
                        continue
                    events.append((event.timestamp(), event.type, event.code, event.value))
                    if event.code == keymaps.KEY_ENTER and event.value == 1:
                        break
    finally:
        with contextlib.suppress(OSError):
            device.ungrab()
        with contextlib.suppress(OSError):
            device.close()
    return events


def print_calibration(result: Calibration, out: TextIO) -> int:
    """Tell the user which layout setting to use; EXIT_FAILURE when none decodes exactly."""
    if result.exact:
        best, others = result.exact[0], result.exact[1:]
        out.write(f'layout = "{best}"\n')
        if others:
            shown = ", ".join(others[:12]) + (" …" if len(others) > 12 else "")
            out.write(f"# these decode it exactly too: {shown}\n")
        return EXIT_OK
    out.write(
        "No layout decodes the calibration barcode exactly; the closest are:\n"
        + "".join(f"  {name}: {text!r}\n" for name, text in result.nearest)
        + f"expected {CALIBRATION_TEXT!r}; check that the scanner sends Enter after a scan "
        "and that it is the calibration barcode\n"
    )
    return EXIT_FAILURE


def _calibrate_main(args: argparse.Namespace) -> int:
    try:
        events = asyncio.run(read_one_scan(args.calibrate, seconds=args.duration or 60.0))
    except OSError as exc:
        print(
            f"scanstation devices: cannot read {args.calibrate!r}: {exc.strerror or exc}; "
            "expected a readable /dev/input/event* or /dev/input/by-id/… device "
            "(run as a member of the 'input' group)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    if not events:
        print("scanstation devices: no scan arrived; nothing to calibrate", file=sys.stderr)
        return EXIT_FAILURE
    return print_calibration(calibrate_layouts(events), sys.stdout)


def devices_main(argv: list[str]) -> int:
    """`scanstation devices [--record DEVICE] [--json]`."""
    parser = argparse.ArgumentParser(
        prog="scanstation devices",
        description="List input devices that look like barcode scanners, cameras and serial "
        "ports; or record a scanner's raw key events as JSON lines.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--all", action="store_true", help="list every input device")
    parser.add_argument("--record", metavar="DEVICE", help="record this input device")
    parser.add_argument(
        "--calibrate",
        metavar="DEVICE",
        help="scan docs/calibration-barcode.pdf with this scanner; prints its layout setting",
    )
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop recording after this long"
    )
    parser.add_argument(
        "--no-grab", action="store_true", help="record without grabbing (keys also go on)"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the recording here")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.record:
        return _record_main(args)
    if args.calibrate:
        return _calibrate_main(args)
    inputs, cameras, ports = list_input_devices(), list_cameras(), list_serial_ports()
    if args.json:
        shown = [d for d in inputs if args.all or d.keyboard or d.scanner]
        print(
            json.dumps(
                {
                    "input": [asdict(d) for d in shown],
                    "cameras": [asdict(c) for c in cameras],
                    "serial": [asdict(p) for p in ports],
                },
                indent=2,
            )
        )
    else:
        _print_table(inputs, cameras, ports, sys.stdout, args.all)
    return EXIT_OK


def _record_main(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    try:
        if args.output:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            count = asyncio.run(
                record(args.record, out, grab=not args.no_grab, duration=args.duration)
            )
        except KeyboardInterrupt:
            count = -1
        finally:
            if out is not sys.stdout:
                out.close()
    except OSError as exc:
        print(
            f"scanstation devices: cannot record {args.record!r}: {exc.strerror or exc}; "
            "expected a readable /dev/input/event* or /dev/input/by-id/… device "
            "(run as a member of the 'input' group)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if count >= 0:
        print(f"recorded {count} key events", file=sys.stderr)
    return EXIT_OK


# --- Replaying ---------------------------------------------------------------------------


def read_recording(lines: Iterable[str], source: str = "<recording>") -> list[KeyEvent]:
    """Parse JSON-lines events; raises RecordingError naming the bad line.

    >>> read_recording(['{"t": 0.5, "type": 1, "code": 30, "value": 1}'])
    [(0.5, 1, 30, 1)]
    """
    events: list[KeyEvent] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            event = (float(row["t"]), int(row["type"]), int(row["code"]), int(row["value"]))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            raise RecordingError(
                f"{source}, line {number}: {line.strip()[:80]!r} is not an event; expected "
                '{"t": seconds, "type": N, "code": N, "value": N}'
            ) from None
        events.append(event)
    return events


_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|\\)")


def unescape(text: str) -> str:
    r"""Turn ``\x1d``, ``\u001d`` and ``\\`` in a command-line value into the characters.

    >>> unescape(r"\x1d") == "\x1d", unescape(r"a\\b")
    (True, 'a\\b')
    """
    return _ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), text)


def _settings_from_args(args: argparse.Namespace) -> DecoderSettings:
    base = DecoderSettings()
    if args.config:
        from scanstation.config import HidSourceConfig, load_config

        config = load_config(args.config)
        hid = [s for s in config.sources if isinstance(s, HidSourceConfig)]
        if args.source:
            hid = [s for s in hid if s.name == args.source]
        if not hid:
            named = f" named {args.source!r}" if args.source else ""
            raise HidError(
                f"{args.config}: no hid source{named}; "
                'expected a [[sources]] entry with type = "hid"'
            )
        base = DecoderSettings.from_config(hid[0])
    function_keys = dict(base.function_keys)
    for item in args.function_key:
        name, sep, text = item.partition("=")
        if not sep:
            raise HidError(f"--function-key {item!r}: expected NAME=TEXT, e.g. F8=\\x1d")
        function_keys[name] = unescape(text)
    return DecoderSettings(
        layout=args.layout or base.layout,
        prefix=unescape(args.prefix) if args.prefix is not None else base.prefix,
        suffix=unescape(args.suffix) if args.suffix is not None else base.suffix,
        terminator=args.terminator or base.terminator,
        inter_key_timeout=(
            args.timeout_ms / 1000 if args.timeout_ms is not None else base.inter_key_timeout
        ),
        gs_substitutes=base.gs_substitutes + tuple(unescape(s) for s in args.gs_substitute),
        function_keys=function_keys,
        aim_identifier=base.aim_identifier and not args.no_aim,
        min_length=args.min_length or base.min_length,
    )


def scan_json(scan: ScanText, interpret: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The JSON object hid-replay prints for one scan."""
    row: dict[str, Any] = {
        "raw_value": scan.raw_value,
        "symbology_identifier": scan.symbology_identifier,
        "symbology": scan.symbology,
        "t": round(scan.started_at, 6),
        "duration_ms": round((scan.ended_at - scan.started_at) * 1000, 1),
        "keystrokes": scan.keystrokes,
    }
    if interpret is not None:
        result = interpret(scan.raw_value, symbology_identifier=scan.symbology_identifier)
        row["interpretation"] = result.to_json()
    return row


def hid_replay_main(argv: list[str]) -> int:
    """`scanstation hid-replay FILE --layout L`: one JSON line per scan the recording holds."""
    parser = argparse.ArgumentParser(
        prog="scanstation hid-replay",
        description="Decode a key-event recording (from `scanstation devices --record`) into "
        "scans, one JSON line each; dropped keystrokes are explained on stderr.",
    )
    parser.add_argument("file", metavar="FILE", help="the recording (JSON lines), or - for stdin")
    parser.add_argument(
        "--layout", help="keyboard layout as xkb spells it: de, ch(fr), us(intl) (default: us)"
    )
    parser.add_argument("--terminator", choices=["enter", "tab", "none"])
    parser.add_argument("--prefix", help="text every scan starts with")
    parser.add_argument("--suffix", help="text every scan ends with")
    parser.add_argument(
        "--gs-substitute",
        action="append",
        default=[],
        metavar="TEXT",
        help="text the scanner sends for GS, e.g. '<GS>' (repeatable)",
    )
    parser.add_argument(
        "--function-key",
        action="append",
        default=[],
        metavar="F8=TEXT",
        help="what a function key stands for, e.g. F8=\\x1d (repeatable)",
    )
    parser.add_argument("--timeout-ms", type=float, help="inter-key timeout (default 50)")
    parser.add_argument("--min-length", type=int, help="drop shorter scans")
    parser.add_argument("--no-aim", action="store_true", help="keep ]xx identifiers in the value")
    parser.add_argument(
        "--interpret", action="store_true", help="add the GS1 interpretation of each scan"
    )
    parser.add_argument("--config", help="take the settings of a hid source in this config")
    parser.add_argument("--source", help="which hid source of --config (default: the first)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        settings = _settings_from_args(args)
    except (HidError, keymaps.KeymapError, ValueError) as exc:
        print(f"scanstation hid-replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.file == "-":
            events = read_recording(sys.stdin, "<stdin>")
        else:
            with open(args.file, encoding="utf-8") as handle:
                events = read_recording(handle, args.file)
    except OSError as exc:
        print(f"scanstation hid-replay: cannot read {args.file!r}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    except RecordingError as exc:
        print(f"scanstation hid-replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    interpret: Callable[..., Any] | None = None
    if args.interpret:
        from scanstation.barcode import interpret as interpret_module

        interpret = interpret_module.interpret
    scans = dropped = 0
    for outcome in decode_recording(events, settings):
        if isinstance(outcome, ScanText):
            scans += 1
            print(json.dumps(scan_json(outcome, interpret), ensure_ascii=False))
        else:
            dropped += 1
            print(
                f"dropped {outcome.text!r} at t={outcome.at:.3f}: {outcome.reason}",
                file=sys.stderr,
            )
    print(
        f"{scans} scan{'s' if scans != 1 else ''}, {dropped} dropped, from {len(events)} events "
        f"(layout {settings.layout}, terminator {settings.terminator})",
        file=sys.stderr,
    )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(devices_main(sys.argv[1:]))
