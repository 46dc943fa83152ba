"""paho-mqtt's client with a read buffer, for a consumer of thousands of messages a second.

paho reads each packet's header a byte at a time (three or four ``recv`` calls for a small
PUBLISH) and handles one packet per ``select`` round; at collector rates that loop is most of
the process's CPU. This subclass reads the socket in 64 KiB chunks and handles every packet
already buffered before it returns to ``select``. It overrides two of paho's internal methods
(``_sock_recv``, ``_sock_close``) and ``loop_read``; paho is pinned below 3, and the
collector's tests run through it against a real broker.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

CHUNK = 65536


class BufferedClient(paho.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

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
            rc = super().loop_read(max_packets)
        return rc
