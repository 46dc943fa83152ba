"""The OPC UA server as a client sees it: an asyncua client browses the AutoID device of a
lane, calls Scan (which triggers the camera and returns that window's codes), and receives
an OpticalScanEvent for every code read."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from lane import lane_config, running_lane, until
from scanstation.plc.opcua import NAMESPACE, OpcUaLink

OPCUA = {"enabled": True, "endpoint": "opc.tcp://127.0.0.1:0/scanstation/"}


class Events:
    """An asyncua subscription handler that keeps the events it is given."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.received.append(event)


async def test_opcua_client_browses_the_device_calls_scan_and_gets_scan_results(
    tmp_path: Path,
) -> None:
    config = lane_config(tmp_path, opcua=OPCUA)
    async with running_lane(config) as lane:
        [link] = lane.daemon.plc_links
        assert isinstance(link, OpcUaLink)
        await until(link.listening.is_set, within=30)
        async with Client(link.endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            device_set = await client.nodes.objects.get_child(f"{idx}:DeviceSet")
            [device] = await device_set.get_children()
            assert (await device.read_browse_name()).Name == "lane-7"
            device_type = await client.get_node(
                await device.read_type_definition()
            ).read_browse_name()
            assert device_type.Name == "OpticalReaderDeviceType"
            names = {(await n.read_browse_name()).Name for n in await device.get_children()}
            assert {"Scan", "DeviceName", "DeviceStatus", "LastScanData", "GoodReads"} <= names

            handler = Events()
            event_type = await client.nodes.base_event_type.get_child(
                [f"{idx}:AutoIdScanEventType", f"{idx}:OpticalScanEventType"]
            )
            subscription = await client.create_subscription(50, handler)
            await subscription.subscribe_events(device, event_type)

            # Scan: the camera opens a window; the label in view is the result.
            scan = await device.get_child(f"{idx}:Scan")
            call = asyncio.create_task(
                device.call_method(
                    scan,
                    ua.Variant(5000.0, ua.VariantType.Double),
                    ua.Variant(1, ua.VariantType.Int32),
                    ua.Variant(True, ua.VariantType.Boolean),
                )
            )
            await until(lambda: lane.source.stats().triggers == 1)
            lane.show("01-ean13.jpg")
            codes, status = await asyncio.wait_for(call, 15)
            assert (codes, status) == (["4006381333931"], 0)  # SUCCESS

            # A window with nothing: NO_IDENTIFIER.
            call = asyncio.create_task(device.call_method(scan, 5000.0, 1, True))
            await until(lambda: lane.source.stats().triggers == 2)
            lane.clock.set(lane.clock.t + 5)
            lane.show("07-empty.jpg")
            codes, status = await asyncio.wait_for(call, 15)
            assert (codes, status) == ([], 8)

            # Windows the photo-eye (here: the lane's own trigger) opens raise events too.
            await lane.window("06-two-codes.jpg")
            await until(lambda: len(handler.received) == 3)
            first, *others = handler.received
            assert (first.ScanData, first.Symbology, first.DeviceName) == (
                "4006381333931", "EAN13", "lane-7",
            )  # fmt: skip
            assert 0 < first.Grade <= 100
            assert {e.ScanData for e in others} == {"5901234123457", "https://example.com/p/42"}
            assert {e.Result for e in others} == {"multiple"}
            good = await (await device.get_child(f"{idx}:GoodReads")).read_value()
            assert good == 1
            await subscription.delete()
