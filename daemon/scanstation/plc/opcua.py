"""The OPC UA server (asyncua): the station as an OPC 30010 AutoID optical reader.

The server imports the OPC Foundation's nodesets (DI, then AutoID; ``plc/autoid.py``) and
instantiates the station, under DI's ``Objects/DeviceSet``, as an object of the standard type
``OpticalReaderDeviceType`` (namespace ``http://opcfoundation.org/UA/AutoID/``):

- its mandatory components: DI's identification (``Manufacturer``, ``Model``,
  ``SerialNumber`` = the device id, ``SoftwareRevision`` = the scanstation version, …) and
  AutoID's ``DeviceName``, ``DeviceStatus`` (``Idle`` / ``Scanning``), ``AutoIdModelVersion``;
- the optional ones the station implements: DI's ``DeviceHealth`` (from the triggered
  camera's state and the quality alarm), AutoID's ``LastScanData``, ``LastScanTimestamp``
  and the method ``Scan([in] ScanSettings Settings, [out] OpticalScanResult[] Results,
  [out] AutoIdOperationStatusEnumeration Status)``, its arguments as the nodeset declares them;
- the read-rate counters (``GoodReads``, … as the Modbus registers) in the station's own
  namespace ``urn:scanstation``.

``Scan`` fires the software trigger of the first triggered camera (or the object window, as
Modbus coil 0 does) and collects that source's windows until one of the ScanSettings'
termination conditions holds (``Duration`` ms, ``Cycles`` windows, ``DataAvailable``); each
window is one cycle (the next cycle triggers again). Every code read comes back as an
``OpticalScanResult``: ``CodeType`` ``RAW:STRING``, ``ScanData`` the ScanData union's
``String``, ``Timestamp``, ``Symbology`` and ``Grade`` (the indicative quality score).

Every code of every window (from Scan or the photo-eye) raises an ``OpticalScanEventType``
event from the device and from the Server object: ``DeviceName`` and ``ScanResult`` (one
``OpticalScanResult``), with the verdict in ``Message`` and ``Severity``.

asyncua is imported only when ``[opcua] enabled``. The server runs in a thread of its own
with its own event loop: building the address space (the standard one, then the two
nodesets) is CPU work of one to a few seconds that asyncua does without yielding, and would
stall the daemon's loop (the cameras, the pipeline) for that long; a client's requests are
served there too, not on the daemon's loop (they share the GIL, not the loop; the build's
objects are frozen out of the collector, see ``_serve``). The daemon's loop only posts each
closed window
(with the counters as they are then) and the health to it, and the Scan method fires the
trigger back on the daemon's loop. No security policy is offered: keep the endpoint on
loopback or a PLC-only network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import datetime as dt
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from scanstation import __version__
from scanstation.config import OpcUaConfig
from scanstation.plc import PlcError, autoid
from scanstation.readstats import ReadStats, WindowResult

log = logging.getLogger(__name__)

NAMESPACE = "urn:scanstation"
"""The station's own namespace: the device object's node ids and its read-rate counters."""
SCAN_LIMIT_MS = 60_000.0
"""The longest a Scan call runs (Duration 0 = "infinite" with Cycles or DataAvailable)."""
EVENT_QUEUE = 256
MODEL_TYPES: Any = ua
"""Where asyncua puts the classes it generates from the nodesets' data types (ScanSettings,
ScanData, OpticalScanResult, …): its ``ua`` module, once :func:`load_models` ran."""
HEALTH_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class Read:
    """One code of a window, as a ScanResult carries it."""

    code: str
    symbology: str
    score: float | None
    t: float


def reads_of(result: WindowResult) -> list[Read]:
    """The codes of a window with their symbology, score and time."""
    return [
        Read(
            code,
            result.symbologies[i] if i < len(result.symbologies) else "",
            result.scores[i] if i < len(result.scores) else None,
            result.t,
        )
        for i, code in enumerate(result.codes)
    ]


def board_model() -> str:
    """The board's model from the device tree (e.g. "Raspberry Pi 4 Model B Rev 1.4")."""
    try:
        return Path("/proc/device-tree/model").read_text("utf-8").strip("\0\n ")
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class _Window:
    """A closed window as posted to the server's thread, with the counters at that moment."""

    result: WindowResult
    totals: dict[str, int]


class OpcUaLink:
    """The AutoID device over the read statistics (see the module docstring)."""

    def __init__(
        self,
        config: OpcUaConfig,
        stats: ReadStats,
        trigger: Callable[[], None] | None,
        *,
        device_name: str,
        trigger_source: str = "",
        health: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.trigger = trigger
        self.trigger_source = trigger_source
        self.health = health
        """The triggered source's state (starting, running, reconnecting, stopped, failed)."""
        self.device_name = config.device_name or device_name
        self.endpoint = config.endpoint
        """The endpoint listened on (the port filled in when 0 was configured)."""
        self.listening = asyncio.Event()
        self.startup_s = 0.0
        """Seconds from run() to listening (the address space's build is most of it)."""
        self.scans = 0
        self.dropped_events = 0
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The server thread's loop (None until it runs)."""
        self._inbox: asyncio.Queue[_Window | int] | None = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stopping = threading.Event()
        self._waiters: list[asyncio.Queue[WindowResult]] = []
        self._scanning = False
        self._nodes: dict[str, Node] = {}
        self._health_value = -1

    # -- the daemon's loop -----------------------------------------------------------------

    def on_window(self, result: WindowResult) -> None:
        """Every closed window (read statistics listener): post it to the server's thread."""
        self._post(_Window(result, {str(k): v for k, v in self.stats.totals().items()}))

    def _post(self, item: _Window | int) -> None:
        loop, inbox = self._loop, self._inbox
        if loop is None or inbox is None:
            return
        with contextlib.suppress(RuntimeError):  # the server's loop has just closed
            loop.call_soon_threadsafe(self._deliver, inbox, item)

    def _deliver(self, inbox: asyncio.Queue[_Window | int], item: _Window | int) -> None:
        try:
            inbox.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped_events += 1

    def health_value(self) -> int:
        """DeviceHealth now: the triggered camera's state, then the quality alarm."""
        state = self.health() if self.health is not None else "running"
        if state in ("failed", "reconnecting", "stopped"):
            return autoid.DEVICE_HEALTH["FAILURE"]
        if state == "starting":
            return autoid.DEVICE_HEALTH["CHECK_FUNCTION"]
        if any(r.quality.alarm for r in self.stats.reports().values()):
            return autoid.DEVICE_HEALTH["MAINTENANCE_REQUIRED"]
        return autoid.DEVICE_HEALTH["NORMAL"]

    async def run(self) -> None:
        """Serve (in the server's thread) until cancelled."""
        self._main = asyncio.get_running_loop()
        started = time.perf_counter()
        thread = threading.Thread(target=self._thread_main, name="opcua", daemon=True)
        thread.start()
        try:
            await asyncio.wrap_future(self._started)
            self.startup_s = time.perf_counter() - started
            self.stats.listeners.append(self.on_window)
            self.listening.set()
            log.info(
                "opcua: serving %s as %s (OPC 30010 OpticalReaderDeviceType; ready in %.2f s)",
                self.endpoint,
                self.device_name,
                self.startup_s,
            )
            finished = asyncio.wrap_future(self._finished)
            while True:
                self._post(self.health_value())
                done, _ = await asyncio.wait([finished], timeout=HEALTH_EVERY_S)
                if done:
                    finished.result()
                    raise PlcError("opcua: the server stopped")
        finally:
            with contextlib.suppress(ValueError):
                self.stats.listeners.remove(self.on_window)
            self._stopping.set()
            await asyncio.to_thread(thread.join, 10)

    def _fire_trigger(self) -> None:
        """From the server's thread: the trigger, on the daemon's loop."""
        if self.trigger is not None and self._main is not None:
            with contextlib.suppress(RuntimeError):
                self._main.call_soon_threadsafe(self.trigger)

    # -- the server's thread ---------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to run() on the daemon's loop
            if not self._started.done():
                self._started.set_exception(exc)
            self._finished.set_exception(exc)
        else:
            self._finished.set_result(None)
        finally:
            # A restart (settings applied) builds a new server in this process: the old
            # address space goes back to the collector, or its cycles would stay frozen.
            gc.unfreeze()
            gc.collect()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[_Window | int] = asyncio.Queue(maxsize=EVENT_QUEUE)
        # The build allocates some 500,000 objects that live as long as the server. Python's
        # automatic collections during it, and every full collection after it, would walk
        # them all with the GIL held (about 0.2 s here, each time), pausing the daemon's
        # loop: collections are off while building, and what was built is then frozen
        # out of them (gc.freeze).
        gc.disable()
        try:
            server = Server()
            await server.init()
            server.set_endpoint(self.config.endpoint)
            server.set_server_name(f"scanstation {self.device_name}")
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            await load_models(server)
            device, event_type = await self._build(server)
            generators = []
            for emitter in (device.nodeid, _nid(ObjectIds.Server, 0)):
                # The type already declares what it generates: no GeneratesEvent on the instance.
                generator = EventGenerator(server.iserver.isession)
                await generator.init(event_type, emitter, add_generates_event=False)
                # The nodeset declares these fields without a value, so asyncua cannot tell their
                # Variant type from it: String and an ExtensionObject array (OpticalScanResult[]).
                generator.event.data_types["DeviceName"] = ua.VariantType.String
                generator.event.data_types["ScanResult"] = ua.VariantType.ExtensionObject
                generators.append(generator)
        finally:
            gc.freeze()
            gc.enable()
        release_build_memory()
        try:
            await server.start()
        except OSError as exc:
            raise PlcError(
                f"opcua.endpoint = {self.config.endpoint!r}: cannot listen ({exc.strerror}); "
                "choose a free port"
            ) from None
        try:
            self.endpoint = self._actual_endpoint(server)
            self._inbox, self._loop = inbox, loop
            self._started.set_result(None)
            stop = loop.run_in_executor(None, self._stopping.wait)
            while not stop.done():
                get = asyncio.ensure_future(inbox.get())
                either: list[asyncio.Future[Any]] = [get, stop]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                item = get.result()
                try:
                    if isinstance(item, int):
                        await self._write_health(item)
                    else:
                        self._hand_to_scans(item.result)
                        await self._publish(item, generators)
                except Exception:  # one window's values or events, never the server
                    log.exception("opcua: could not publish %r", item)
        finally:
            self._loop = None
            await server.stop()
            self._nodes.clear()

    def _actual_endpoint(self, server: Server) -> str:
        port = getattr(getattr(server, "bserver", None), "port", None)
        host = self.config.host
        path = self.config.endpoint.split("://", 1)[1].split("/", 1)
        tail = "/" + path[1] if len(path) > 1 else "/"
        return f"opc.tcp://{host}:{port}{tail}" if port else self.config.endpoint

    async def _build(self, server: Server) -> tuple[Node, Node]:
        """The device object under DeviceSet, its values, its Scan method; the event type."""
        di = await server.get_namespace_index(autoid.DI_URI)
        ai = await server.get_namespace_index(autoid.AUTOID_URI)
        own = await server.register_namespace(NAMESPACE)
        name = self.device_name
        device_set = server.get_node(_nid(autoid.DI_DEVICE_SET, di))
        device = await device_set.add_object(
            _nid(name, own),
            ua.QualifiedName(name, own),
            objecttype=_nid(autoid.OPTICAL_READER_DEVICE_TYPE, ai),
            instantiate_optional=False,
        )
        text = ua.VariantType.String
        for bname, value in (
            (f"{di}:Manufacturer", ua.Variant(ua.LocalizedText(self.config.manufacturer))),
            (f"{di}:Model", ua.Variant(ua.LocalizedText(self.config.model))),
            (f"{di}:SerialNumber", ua.Variant(name, text)),
            (f"{di}:SoftwareRevision", ua.Variant(__version__, text)),
            (f"{di}:HardwareRevision", ua.Variant(board_model(), text)),
            (f"{di}:DeviceRevision", ua.Variant(__version__, text)),
            (f"{di}:DeviceManual", ua.Variant(self.config.manual_url, text)),
            (f"{di}:RevisionCounter", ua.Variant(0, ua.VariantType.Int32)),
            (f"{ai}:AutoIdModelVersion", ua.Variant(autoid.AUTOID_MODEL_VERSION, text)),
            (f"{ai}:DeviceName", ua.Variant(name, text)),
            (f"{ai}:DeviceStatus", _enum(autoid.DEVICE_STATUS["Idle"])),
        ):
            node = await device.get_child(bname)
            await node.write_value(value)
            self._nodes[bname.split(":", 1)[1]] = node
        # The optional components the station implements, as the nodeset declares them.
        for decl, key, value in (
            (_nid(autoid.DI_DEVICE_HEALTH, di), "DeviceHealth", _enum(0)),
            (_nid(autoid.AUTOID_LAST_SCAN_DATA, ai), "LastScanData", ua.Variant("", text)),
            (
                _nid(autoid.AUTOID_LAST_SCAN_TIMESTAMP, ai),
                "LastScanTimestamp",
                ua.Variant(dt.datetime.fromtimestamp(0, dt.UTC), ua.VariantType.DateTime),
            ),
        ):
            self._nodes[key] = await _add_declared_variable(server, device, decl, own, value)
        scan = server.get_node(_nid(autoid.OPTICAL_READER_SCAN, ai))
        inputs = await (await scan.get_child("0:InputArguments")).read_value()
        outputs = await (await scan.get_child("0:OutputArguments")).read_value()
        await device.add_method(
            _nid(f"{name}.Scan", own),
            await scan.read_browse_name(),
            self._scan_method,
            inputs,
            outputs,
        )
        for counter in ("GoodReads", "NoReads", "MultipleReads", "MatchRejects"):
            self._nodes[counter] = await device.add_property(
                _nid(f"{name}.{counter}", own),
                ua.QualifiedName(counter, own),
                ua.Variant(0, ua.VariantType.UInt32),
            )
        return device, server.get_node(_nid(autoid.OPTICAL_SCAN_EVENT_TYPE, ai))

    # -- Scan ------------------------------------------------------------------------------

    async def _scan_method(self, _parent: ua.NodeId, *arguments: ua.Variant) -> Any:
        """The Scan method as asyncua calls it: the Settings Variant → (Results, Status)."""
        settings = arguments[0].Value if arguments else None
        scan_settings = getattr(MODEL_TYPES, "ScanSettings", None)
        if scan_settings is None or not isinstance(settings, scan_settings):
            return _status(StatusCodes.BadInvalidArgument)
        duration = float(settings.Duration or 0.0)
        cycles = int(settings.Cycles or 0)
        available = bool(settings.DataAvailable)
        if duration < 0 or cycles < 0 or (duration == 0 and cycles == 0 and not available):
            # OPC 30010 §6.1.3.4: a client shall not set every condition to infinite.
            return _status(StatusCodes.BadInvalidArgument)
        if self._scanning:
            return _status(StatusCodes.BadInvalidState)  # a scan is already active
        reads, status = await self.scan(duration, cycles, available)
        results = [self._scan_result(read) for read in reads]
        return [
            ua.Variant(results, ua.VariantType.ExtensionObject),
            _enum(status),
        ]

    async def scan(
        self, duration_ms: float, cycles: int, data_available: bool
    ) -> tuple[list[Read], int]:
        """Trigger; collect the trigger source's windows until a termination condition holds.

        ``duration_ms`` 0 and ``cycles`` 0 mean infinite (bounded by ``SCAN_LIMIT_MS``).
        Returns the codes read and the AutoIdOperationStatusEnumeration value: that of the
        last window that read a code (SUCCESS, MULTIPLE_IDENTIFIERS, MATCH_ERROR), else
        NO_IDENTIFIER; DEVICE_NOT_READY without a triggered camera.
        """
        if self.trigger is None:
            return [], autoid.DEVICE_NOT_READY
        limit = min(duration_ms or SCAN_LIMIT_MS, SCAN_LIMIT_MS) / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        windows: asyncio.Queue[WindowResult] = asyncio.Queue(maxsize=64)
        reads: list[Read] = []
        status = autoid.STATUS["noread"]
        self._scanning = True
        self._waiters.append(windows)
        self.scans += 1
        await self._nodes["DeviceStatus"].write_value(_enum(autoid.DEVICE_STATUS["Scanning"]))
        try:
            done = 0
            self._fire_trigger()
            while (remaining := deadline - loop.time()) > 0:
                try:
                    window = await asyncio.wait_for(windows.get(), remaining)
                except TimeoutError:
                    break
                done += 1
                reads.extend(reads_of(window))
                if window.codes:
                    status = autoid.STATUS[window.result]
                if (data_available and window.codes) or (cycles and done >= cycles):
                    break
                self._fire_trigger()  # the next cycle
        finally:
            self._waiters.remove(windows)
            self._scanning = False
            await self._nodes["DeviceStatus"].write_value(_enum(autoid.DEVICE_STATUS["Idle"]))
        return reads, status

    def _scan_result(self, read: Read) -> Any:
        """One code as the standard's OpticalScanResult (ScanData: the union's String)."""
        data = MODEL_TYPES.ScanData()
        data.String = read.code
        return MODEL_TYPES.OpticalScanResult(
            CodeType=autoid.CODE_TYPE,
            ScanData=data,
            Timestamp=dt.datetime.fromtimestamp(read.t, dt.UTC),
            Grade=float(read.score) if read.score is not None else None,
            Symbology=read.symbology or None,
        )

    # -- events and values -----------------------------------------------------------------

    async def _publish(self, window: _Window, generators: list[Any]) -> None:
        result, totals = window.result, window.totals
        for name, count in (
            ("GoodReads", totals["good"]),
            ("NoReads", totals["noread"]),
            ("MultipleReads", totals["multiple"]),
            ("MatchRejects", totals["rejected"]),
        ):
            await self._nodes[name].write_value(ua.Variant(count % 2**32, ua.VariantType.UInt32))
        reads = reads_of(result)
        if reads:
            await self._nodes["LastScanData"].write_value(ua.Variant(reads[-1].code))
            await self._nodes["LastScanTimestamp"].write_value(
                ua.Variant(dt.datetime.fromtimestamp(result.t, dt.UTC), ua.VariantType.DateTime)
            )
        for read in reads:
            scan_result = self._scan_result(read)
            for generator in generators:
                event = generator.event
                event.DeviceName = self.device_name
                event.ScanResult = [scan_result]
                event.Message = ua.LocalizedText(f"{self.device_name}: {result.result} {read.code}")
                event.Severity = 100 if result.result == "good" else 500
                await generator.trigger()

    async def _write_health(self, health: int) -> None:
        if health != self._health_value:
            self._health_value = health
            await self._nodes["DeviceHealth"].write_value(_enum(health))

    def _hand_to_scans(self, result: WindowResult) -> None:
        """A window of the triggered source goes to the Scan call collecting windows."""
        if self.trigger_source and result.source != self.trigger_source:
            return
        for waiter in self._waiters:
            with contextlib.suppress(asyncio.QueueFull):
                waiter.put_nowait(result)


def release_build_memory() -> None:
    """Give back the heap the address space's build freed (the nodesets' text and XML
    trees): glibc's malloc_trim, about 10 MB of RSS (nothing off glibc; the GIL is released
    while it runs)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def load_models(server: Server) -> None:
    """Import DI then AutoID (with the Definition fix-up) and load their data types."""
    # The DI nodeset's UpdateBehavior (an OptionSet below UInt32) is logged by asyncua as
    # "not a struct"; it is an option set, not loaded as a class, and unused here.
    importer_log = logging.getLogger("asyncua.common.xmlimporter")
    level = importer_log.level
    importer_log.setLevel(logging.ERROR)
    try:
        for name in autoid.NODESET_FILES:
            await server.import_xml(xmlstring=autoid.nodeset_text(name))
    finally:
        importer_log.setLevel(level)
    await server.load_data_type_definitions()


async def _add_declared_variable(
    server: Server, parent: Node, declaration: ua.NodeId, own: int, value: ua.Variant
) -> Node:
    """An optional variable of the type, added as its InstanceDeclaration says (browse name,
    data type, property or component)."""
    decl = server.get_node(declaration)
    bname = await decl.read_browse_name()
    datatype = await decl.read_data_type()
    nodeid = _nid(f"{parent.nodeid.Identifier!s}.{bname.Name}", own)
    if await decl.read_type_definition() == _nid(ObjectIds.PropertyType, 0):
        return await parent.add_property(nodeid, bname, value, datatype=datatype)
    return await parent.add_variable(nodeid, bname, value, datatype=datatype)


def _nid(identifier: int | str, namespace: int) -> ua.NodeId:
    """A numeric or string node id (asyncua's NodeId wants its own int and str types)."""
    if isinstance(identifier, str):
        return ua.NodeId(ua.String(identifier), ua.Int16(namespace))
    return ua.NodeId(ua.Int32(identifier), ua.Int16(namespace))


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _enum(value: int) -> ua.Variant:
    """An enumeration value as OPC UA carries it (Int32)."""
    return ua.Variant(value, ua.VariantType.Int32)
