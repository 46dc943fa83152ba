"""paho-mqtt's client with a read buffer, for a consumer of thousands of messages a second.

paho reads each packet's header a byte at a time (three or four ``recv`` calls for a small
PUBLISH), handles one packet per ``select`` round, builds an ``MQTTMessage`` (and with MQTT 5
a ``Properties`` object) for each, and queues every PUBACK as its own packet with a wake-up
write on its socket pair. At collector rates that is most of the process's CPU. This subclass

- reads the socket in 64 KiB chunks and handles every packet already buffered before it
  returns to ``select``;
- with ``on_publishes`` set, decodes the complete QoS 0/1 PUBLISH packets of the buffer
  itself and hands them over as one list per chunk (topic, payload, mid, qos), skipping MQTT
  5 properties by their length: a consumer of station events reads none of them. Anything
  else (CONNACK, SUBACK, PINGRESP, QoS 2, a packet cut by the chunk's end, a topic alias)
  goes through paho's own path, with ``on_message`` as usual;
- sends a batch's PUBACKs as one write (``ack_many``).

It overrides two of paho's internal methods (``_sock_recv``, ``_sock_close``) and
``loop_read``, and reads or calls a few more (``_in_packet``, ``_protocol``,
``_msgtime_mutex``/``_last_bytes_received`` for the keepalive, ``_packet_queue``); paho is
pinned below 3, and the collector's tests run through it against a real broker.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

CHUNK = 65536
PUBLISH = 0x30
PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")

Publish = tuple[str, bytes, int, int]
"""A received PUBLISH: topic, payload, packet id (0 for QoS 0), QoS."""


class BufferedClient(paho.Client):
    def __init__(
        self,
        *args: Any,
        on_publishes: Callable[[list[Publish]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._on_publishes = on_publishes

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(CHUNK)  # BlockingIOError when nothing is there
            if not data:
                return data  # the connection closed
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        chunk = self._rbuf[self._rpos : end]
        self._rpos = min(end, len(self._rbuf))
        return chunk

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # nothing of an old connection reaches a new one
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._rpos < len(self._rbuf)
            and self._sock is not None
        ):
            if self._on_publishes is not None and self._in_packet["command"] == 0:
                self._take_publishes()
                if self._rpos >= len(self._rbuf):
                    break
            rc = super().loop_read(max_packets)
        return rc

    def _take_publishes(self) -> None:
        """Decode the complete QoS 0/1 PUBLISH packets at the head of the buffer."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        out: list[Publish] = []
        while pos < end:
            first = buf[pos]
            qos = (first >> 1) & 3
            if first & 0xF0 != PUBLISH or qos == 2:
                break
            length, start = _varint(buf, pos + 1, end)
            if length < 0 or start + length > end:
                break  # cut by the chunk's end (or malformed): paho's path reads it
            stop = start + length
            tlen = (buf[start] << 8) | buf[start + 1]
            i = start + 2 + tlen
            if tlen == 0 or i > stop:
                break  # a topic alias or a malformed packet: paho's path decides
            topic = buf[start + 2 : i].decode("utf-8", "replace")
            mid = 0
            if qos:
                if i + 2 > stop:
                    break  # no room for the packet id: malformed, paho's path decides
                mid = (buf[i] << 8) | buf[i + 1]
                i += 2
            if v5:
                plen, i = _varint(buf, i, stop)
                if plen < 0 or i + plen > stop:
                    break
                i += plen
            out.append((topic, buf[i:stop], mid, qos))
            pos = stop
        if out:
            self._rpos = pos
            with self._msgtime_mutex:
                self._last_bytes_received = paho.time_func()
            assert self._on_publishes is not None
            self._on_publishes(out)

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK every QoS 1 ``mid`` in one queued write (manual acknowledgement)."""
        pack = _PUBACK.pack
        packet = b"".join([pack(PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(PUBACK, packet, 0, 0)


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """MQTT's variable byte integer at ``buf[i:]``: (value, index after it); -1 when cut."""
    value = 0
    shift = 0
    while i < end and shift <= 21:
        byte = buf[i]
        i += 1
        value |= (byte & 127) << shift
        if not byte & 128:
            return value, i
        shift += 7
    return -1, i
