"""The OPC UA server as an OPC 30010 client sees it: an asyncua client browses
Objects/DeviceSet to the lane's AutoID device by the standard's browse names, reads its DI
identification, calls Scan with a ScanSettings structure (which triggers the camera and
returns that window's codes as OpticalScanResult structures), and receives an
OpticalScanEventType event for every code read."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Node, ua
from asyncua.ua.uaerrors import BadInvalidArgument

from lane import lane_config, running_lane, until
from scanstation import __version__
from scanstation.plc import PlcError
from scanstation.plc.opcua import OpcUaLink
from scanstation.readstats import ReadStats

OPCUA = {"enabled": True, "endpoint": "opc.tcp://127.0.0.1:0/scanstation/"}
DI = "http://opcfoundation.org/UA/DI/"
AUTOID = "http://opcfoundation.org/UA/AutoID/"
TYPES: Any = ua  # the classes the client generates from the server's data type definitions


class Events:
    """An asyncua subscription handler that keeps the events it is given."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.received.append(event)


async def find_reader(client: Client, di: int, ai: int) -> Node:
    """The one object under DI's DeviceSet whose type is AutoID's OpticalReaderDeviceType."""
    device_set = await client.nodes.objects.get_child(f"{di}:DeviceSet")
    readers = []
    for child in await device_set.get_children():
        type_name = await client.get_node(await child.read_type_definition()).read_browse_name()
        if type_name == ua.QualifiedName("OpticalReaderDeviceType", ai):
            readers.append(child)
    [reader] = readers
    return reader


def scan_settings(duration_ms: float, cycles: int = 0, data_available: bool = False) -> Any:
    return TYPES.ScanSettings(Duration=duration_ms, Cycles=cycles, DataAvailable=data_available)


async def test_opcua_client_browses_the_autoid_device_calls_scan_and_gets_scan_results(
    tmp_path: Path,
) -> None:
    config = lane_config(tmp_path, opcua=OPCUA)
    async with running_lane(config) as lane:
        [link] = lane.daemon.plc_links
        assert isinstance(link, OpcUaLink)
        await until(link.listening.is_set, within=60)
        async with Client(link.endpoint, timeout=20) as client:
            await client.load_data_type_definitions()
            di = await client.get_namespace_index(DI)
            ai = await client.get_namespace_index(AUTOID)
            device = await find_reader(client, di, ai)
            assert (await device.read_browse_name()).Name == "lane-7"

            async def read(path: str) -> Any:
                return await (await device.get_child(path)).read_value()

            # DI identification and AutoID's mandatory variables.
            assert (await read(f"{di}:Manufacturer")).Text == "scanstation"
            assert (await read(f"{di}:Model")).Text == "scanstation barcode station"
            assert await read(f"{di}:SerialNumber") == "lane-7"
            assert await read(f"{di}:SoftwareRevision") == __version__
            assert await read(f"{di}:DeviceHealth") == 0  # NORMAL: the lane's camera runs
            assert await read(f"{ai}:DeviceName") == "lane-7"
            assert await read(f"{ai}:DeviceStatus") == 0  # Idle
            assert await read(f"{ai}:AutoIdModelVersion") == "1.01"

            # Scan's signature is the standard's: ScanSettings in, OpticalScanResult[] and
            # the AutoIdOperationStatusEnumeration out.
            scan = await device.get_child(f"{ai}:Scan")
            [settings] = await (await scan.get_child("0:InputArguments")).read_value()
            results_arg, status_arg = await (await scan.get_child("0:OutputArguments")).read_value()
            assert (settings.Name, settings.DataType) == ("Settings", ua.NodeId(3010, ai))
            assert (results_arg.Name, results_arg.DataType, results_arg.ValueRank) == (
                "Results", ua.NodeId(3026, ai), 1,
            )  # fmt: skip
            assert (status_arg.Name, status_arg.DataType) == ("Status", ua.NodeId(3013, ai))

            handler = Events()
            event_type = await client.nodes.base_event_type.get_child(
                [f"{ai}:AutoIdScanEventType", f"{ai}:OpticalScanEventType"]
            )
            subscription = await client.create_subscription(50, handler)
            await subscription.subscribe_events(device, event_type)

            # Scan: the camera opens a window; the label in view is the result.
            device_status = (await device.get_child(f"{ai}:DeviceStatus")).nodeid
            before = dt.datetime.now(dt.UTC)
            call = asyncio.create_task(
                device.call_method(scan, scan_settings(5000.0, 1, data_available=True))
            )
            await until(lambda: lane.source.stats().triggers == 1)
            # The server answers a session's requests in order: a second session watches.
            async with Client(link.endpoint, timeout=20) as watcher:
                assert await watcher.get_node(device_status).read_value() == 2  # Scanning
            lane.show("01-ean13.jpg")
            results, status = await asyncio.wait_for(call, 15)
            assert status == 0  # SUCCESS
            [result] = results
            assert isinstance(result, TYPES.OpticalScanResult)
            assert result.ScanData.String == "4006381333931"
            assert (result.CodeType, result.Symbology) == ("RAW:STRING", "EAN13")
            assert before <= result.Timestamp <= dt.datetime.now(dt.UTC)
            assert 0 < result.Grade <= 100
            assert await read(f"{ai}:DeviceStatus") == 0
            assert await read(f"{ai}:LastScanData") == "4006381333931"

            # A window with nothing in it, within the duration: NO_IDENTIFIER, no result.
            call = asyncio.create_task(device.call_method(scan, scan_settings(5000.0, 1)))
            await until(lambda: lane.source.stats().triggers == 2)
            lane.clock.set(lane.clock.t + 5)
            lane.show("07-empty.jpg")
            assert await asyncio.wait_for(call, 15) == [[], 8]

            # Every condition infinite is refused, as OPC 30010 says.
            with pytest.raises(BadInvalidArgument):
                await device.call_method(scan, scan_settings(0.0, 0, data_available=False))

            # Two cycles: each is one window, the second triggered once the first closed;
            # the results are every code of both, the status that of the last with a code.
            call = asyncio.create_task(device.call_method(scan, scan_settings(10000.0, 2)))
            await until(lambda: lane.source.stats().triggers == 3)
            lane.show("01-ean13.jpg")
            await until(lambda: lane.source.stats().triggers == 4)
            lane.show("06-two-codes.jpg")
            results, status = await asyncio.wait_for(call, 15)
            assert len(results) == 3
            assert results[0].ScanData.String == "4006381333931"
            assert {r.ScanData.String for r in results[1:]} == {
                "5901234123457",
                "https://example.com/p/42",
            }
            assert status == 9  # MULTIPLE_IDENTIFIERS: the second window read two codes

            # Windows the photo-eye (here: the lane's own trigger) opens raise events too.
            await lane.window("06-two-codes.jpg")
            await until(lambda: len(handler.received) == 6)
            first, *_, fifth, sixth = handler.received
            assert first.DeviceName == "lane-7"
            [scanned] = first.ScanResult
            assert isinstance(scanned, TYPES.OpticalScanResult)
            assert (scanned.ScanData.String, scanned.Symbology, scanned.CodeType) == (
                "4006381333931", "EAN13", "RAW:STRING",
            )  # fmt: skip
            assert before <= scanned.Timestamp <= dt.datetime.now(dt.UTC)
            assert first.EventType == ua.NodeId(1009, ai)  # OpticalScanEventType
            assert {e.ScanResult[0].ScanData.String for e in (fifth, sixth)} == {
                "5901234123457",
                "https://example.com/p/42",
            }
            assert all("multiple" in e.Message.Text for e in (fifth, sixth))
            own = await client.get_namespace_index("urn:scanstation")
            good = await (await device.get_child(f"{own}:GoodReads")).read_value()
            assert good == 2
            await subscription.delete()


async def test_an_endpoint_in_use_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = lane_config(
            tmp_path, opcua={"enabled": True, "endpoint": f"opc.tcp://127.0.0.1:{port}/x/"}
        )
        link = OpcUaLink(config.opcua, ReadStats(), None, device_name="lane-7")
        with pytest.raises(PlcError, match=rf"opcua.endpoint = 'opc.tcp://127.0.0.1:{port}/x/'"):
            await asyncio.wait_for(link.run(), 60)
    assert not link.listening.is_set()


def test_device_health_follows_the_camera_and_the_quality_trend(tmp_path: Path) -> None:
    """What DeviceHealth is set to (DI's DeviceHealthEnumeration), from the daemon's state."""
    config = lane_config(tmp_path, opcua=OPCUA)
    state = ["running"]
    stats = ReadStats(quality_alarm=60.0)
    link = OpcUaLink(config.opcua, stats, None, device_name="lane-7", health=lambda: state[0])
    assert link.health_value() == 0  # NORMAL
    for score in (40.0, 35.0, 30.0):  # labels fading
        stats.code_read("lane", "4006381333931", score)
    assert link.health_value() == 4  # MAINTENANCE_REQUIRED
    state[0] = "reconnecting"
    assert link.health_value() == 1  # FAILURE: the camera is gone
    state[0] = "starting"
    assert link.health_value() == 2  # CHECK_FUNCTION
