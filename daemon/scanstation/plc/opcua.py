"""The OPC UA server (asyncua): the station as an AutoID optical reader, after OPC 30010.

The address space follows the OPC UA for AutoID companion specification's names:

- ``Objects/DeviceSet/<device>``: an object of type ``OpticalReaderDeviceType`` with the
  properties ``DeviceName``, ``DeviceStatus`` (``Idle`` / ``Scanning``), ``LastScanData``,
  ``LastScanTimestamp`` and the read-rate counters;
- its method ``Scan(Duration, Cycles, DataAvailable) → (Results, Status)``: fires the software
  trigger of the first triggered camera (or the object window) and waits up to ``Duration``
  ms for that window's result; ``Results`` are the codes read (ScanData as strings) and
  ``Status`` an ``AutoIdOperationStatusEnumeration`` value: 0 SUCCESS, 8 NO_IDENTIFIER,
  9 MULTIPLE_IDENTIFIERS, 12 MATCH_ERROR, 17 DEVICE_NOT_READY;
- an ``OpticalScanEventType`` event (a subtype of ``AutoIdScanEventType``; from the device and
  the Server object) for every code of every window, carrying ``DeviceName``, ``AutoID`` /
  ``ScanData`` (the code), ``CodeType`` and ``Symbology`` (the symbology, e.g. ``EAN13``),
  ``Timestamp``, ``Grade`` (the indicative quality score, -1 when not measured) and
  ``Result`` (good, multiple or rejected).

The types are defined in the station's own namespace (``urn:scanstation:autoid``) with the
standard's browse names; the OPC Foundation's AutoID nodeset itself is not loaded, and
``Results`` is a String array rather than the ``ScanResult`` structure, so generic AutoID
clients that expect the standard's node ids need a mapping. No security policy is offered:
keep the endpoint on loopback or a PLC-only network.

asyncua is imported only when ``[opcua] enabled``; the server runs on the daemon's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds

from scanstation.config import OpcUaConfig
from scanstation.plc import PlcError
from scanstation.readstats import ReadStats, WindowResult

log = logging.getLogger(__name__)

NAMESPACE = "urn:scanstation:autoid"
STATUS = {"good": 0, "noread": 8, "multiple": 9, "rejected": 12}
"""Window result → AutoIdOperationStatusEnumeration (OPC 30010 §9.2.1)."""
DEVICE_NOT_READY = 17
SCAN_LIMIT_MS = 60_000.0
EVENT_QUEUE = 256


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
    ) -> None:
        self.config = config
        self.stats = stats
        self.trigger = trigger
        self.trigger_source = trigger_source
        self.device_name = config.device_name or device_name
        self.endpoint = config.endpoint
        """The endpoint listened on (the port filled in when 0 was configured)."""
        self.listening = asyncio.Event()
        self.scans = 0
        self._events: asyncio.Queue[WindowResult] = asyncio.Queue(maxsize=EVENT_QUEUE)
        self._waiters: list[asyncio.Future[WindowResult]] = []
        self.dropped_events = 0

    # -- read statistics listener (event loop) ---------------------------------------------

    def on_window(self, result: WindowResult) -> None:
        """Every closed window: wake a waiting Scan call, queue its ScanResult events."""
        if self.trigger_source and result.source != self.trigger_source:
            waiting = []
        else:
            waiting, self._waiters = self._waiters, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(result)
        try:
            self._events.put_nowait(result)
        except asyncio.QueueFull:
            self.dropped_events += 1

    # -- the server ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled."""
        server = Server()
        await server.init()
        server.set_endpoint(self.config.endpoint)
        server.set_server_name(f"scanstation {self.device_name}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        device, event_type = await self._build(server, idx)
        generator = await server.get_event_generator(event_type, device.nodeid)
        server_generator = await server.get_event_generator(event_type)
        try:
            await server.start()
        except OSError as exc:
            raise PlcError(
                f"opcua.endpoint = {self.config.endpoint!r}: cannot listen ({exc.strerror}); "
                "choose a free port"
            ) from None
        self.endpoint = self._actual_endpoint(server)
        self.stats.listeners.append(self.on_window)
        self.listening.set()
        log.info("opcua: serving %s as %s", self.endpoint, self.device_name)
        try:
            while True:
                result = await self._events.get()
                await self._publish(result, [generator, server_generator])
        finally:
            with contextlib.suppress(ValueError):
                self.stats.listeners.remove(self.on_window)
            await server.stop()

    def _actual_endpoint(self, server: Server) -> str:
        port = getattr(getattr(server, "bserver", None), "port", None)
        host = self.config.host
        path = self.config.endpoint.split("://", 1)[1].split("/", 1)
        tail = "/" + path[1] if len(path) > 1 else "/"
        return f"opc.tcp://{host}:{port}{tail}" if port else self.config.endpoint

    async def _build(self, server: Server, idx: int) -> tuple[Node, Node]:
        objects = server.nodes.objects
        base_object = server.get_node(ObjectIds.BaseObjectType)
        reader_type = await base_object.add_object_type(idx, "OpticalReaderDeviceType")
        # OPC 30010: AutoIdScanEventType carries the device and the identifier; the optical
        # reader's OpticalScanEventType adds what the optical ScanResult holds.
        scan_event = await server.create_custom_event_type(
            idx,
            "AutoIdScanEventType",
            ObjectIds.BaseEventType,
            [("DeviceName", ua.VariantType.String), ("AutoID", ua.VariantType.String)],
        )
        event_type = await server.create_custom_event_type(
            idx,
            "OpticalScanEventType",
            scan_event.nodeid,
            [
                ("ScanData", ua.VariantType.String),
                ("CodeType", ua.VariantType.String),
                ("Symbology", ua.VariantType.String),
                ("Timestamp", ua.VariantType.DateTime),
                ("Grade", ua.VariantType.Float),
                ("Result", ua.VariantType.String),
            ],
        )
        device_set = await objects.add_folder(idx, "DeviceSet")
        device = await device_set.add_object(idx, self.device_name, objecttype=reader_type.nodeid)
        await device.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        self._props: dict[str, Node] = {}
        for name, value, vtype in (
            ("DeviceName", self.device_name, ua.VariantType.String),
            ("DeviceStatus", "Idle", ua.VariantType.String),
            ("LastScanData", "", ua.VariantType.String),
            ("LastScanTimestamp", dt.datetime.now(dt.UTC), ua.VariantType.DateTime),
            ("GoodReads", 0, ua.VariantType.UInt32),
            ("NoReads", 0, ua.VariantType.UInt32),
            ("MultipleReads", 0, ua.VariantType.UInt32),
            ("MatchRejects", 0, ua.VariantType.UInt32),
        ):
            self._props[name] = await device.add_property(idx, name, ua.Variant(value, vtype))
        duration = _argument("Duration", ObjectIds.Double, "Longest wait for a result, ms")
        cycles = _argument("Cycles", ObjectIds.Int32, "Read windows (only 1 is supported)")
        available = _argument(
            "DataAvailable", ObjectIds.Boolean, "Return only once a code was read"
        )
        results = _argument("Results", ObjectIds.String, "The codes read", rank=1)
        status = _argument(
            "Status", ObjectIds.Int32, "AutoIdOperationStatusEnumeration (0 = SUCCESS)"
        )
        await device.add_method(
            idx, "Scan", self._scan_method(), [duration, cycles, available], [results, status]
        )
        return device, event_type

    def _scan_method(self) -> Callable[..., Any]:
        async def scan(_parent: ua.NodeId, *arguments: ua.Variant) -> list[ua.Variant]:
            # asyncua hands the input arguments as Variants and sends back the Variants
            # returned, typed as declared (Status must be an Int32, not Python's int64).
            values = [a.Value for a in arguments] + [None, None, None]
            return await self.scan(float(values[0] or 0.0), int(values[1] or 1), bool(values[2]))

        return scan

    async def scan(
        self, duration_ms: float, _cycles: int, _data_available: bool
    ) -> list[ua.Variant]:
        """The Scan method: trigger, wait for that window's result, return (Results, Status)."""
        if self.trigger is None:
            return [
                ua.Variant([], ua.VariantType.String),
                ua.Variant(DEVICE_NOT_READY, ua.VariantType.Int32),
            ]
        limit = min(max(float(duration_ms or 5000.0), 1.0), SCAN_LIMIT_MS) / 1000
        waiter: asyncio.Future[WindowResult] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.scans += 1
        await self._props["DeviceStatus"].write_value("Scanning")
        self.trigger()
        try:
            result = await asyncio.wait_for(waiter, limit)
        except TimeoutError:
            return [
                ua.Variant([], ua.VariantType.String),
                ua.Variant(STATUS["noread"], ua.VariantType.Int32),
            ]
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            await self._props["DeviceStatus"].write_value("Idle")
        return [
            ua.Variant(list(result.codes), ua.VariantType.String),
            ua.Variant(STATUS[result.result], ua.VariantType.Int32),
        ]

    async def _publish(self, result: WindowResult, generators: list[Any]) -> None:
        totals = self.stats.totals()
        for name, count in (
            ("GoodReads", totals["good"]),
            ("NoReads", totals["noread"]),
            ("MultipleReads", totals["multiple"]),
            ("MatchRejects", totals["rejected"]),
        ):
            await self._props[name].write_value(ua.Variant(count % 2**32, ua.VariantType.UInt32))
        when = dt.datetime.fromtimestamp(result.t, dt.UTC)
        if result.codes:
            await self._props["LastScanData"].write_value(result.codes[-1])
            await self._props["LastScanTimestamp"].write_value(when)
        for i, code in enumerate(result.codes):
            symbology = result.symbologies[i] if i < len(result.symbologies) else ""
            score = result.scores[i] if i < len(result.scores) else None
            for generator in generators:
                event = generator.event
                event.DeviceName = self.device_name
                event.AutoID = code
                event.ScanData = code
                event.CodeType = symbology
                event.Symbology = symbology
                event.Timestamp = when
                event.Grade = float(score) if score is not None else -1.0
                event.Result = result.result
                event.Message = ua.LocalizedText(f"{self.device_name}: {result.result} {code}")
                event.Severity = 100 if result.result == "good" else 500
                await generator.trigger()


def _argument(name: str, data_type: int, description: str, rank: int = -1) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(ua.Int32(data_type))
    argument.ValueRank = rank
    argument.ArrayDimensions = [] if rank < 0 else [0]
    argument.Description = ua.LocalizedText(description)
    return argument
