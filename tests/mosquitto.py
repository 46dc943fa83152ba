"""A real Mosquitto for tests: started on a free port, stopped, killed and restarted at will.

Import the fixture explicitly in a test module: ``from mosquitto import broker_fixture``
(it provides the ``broker`` fixture).
Never touches the system broker on 1883.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class Broker:
    """One mosquitto process with a config file in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        extra_conf: str = "",
        port: int | None = None,
        anonymous: bool = True,
        persistence: bool = False,
    ) -> None:
        self.anonymous = anonymous
        self.persistence = persistence
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra_conf = extra_conf
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> Broker:
        if not os.path.exists(MOSQUITTO):
            pytest.skip(f"mosquitto is not installed ({MOSQUITTO} missing)")
        conf = self.workdir / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous {str(self.anonymous).lower()}\n"
            f"persistence {str(self.persistence).lower()}\npersistence_location {self.workdir}/\n"
            "max_queued_messages 100000\n"
            f"log_dest stderr\nlog_type error\nlog_type warning\n{user}{self.extra_conf}\n"
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        # Wait for the port to be free again so a restart can bind it.
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self) -> Broker:
        self.stop()
        return self.start()

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(name="broker")
def broker_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto on a free port for one test (import ``broker_fixture`` to use ``broker``)."""
    b = Broker(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None
    time: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client in its own thread that records every message it receives."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        *,
        protocol: int = 5,
        session: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """``session``: a client id whose session (and queued messages) outlive a disconnect;
        ``username``/``password``: credentials for a broker with a password file."""
        self.port = port
        self.topics = topics
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.session = session
        if session is not None:
            protocol = 4  # a 3.1.1 persistent session: clean_session=False
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or "",
            protocol=MQTTProtocolVersion.MQTTv5 if protocol == 5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if protocol == 5 else session is None,
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        if self.session is None or not self.connected.is_set():
            for topic in self.topics:
                client.subscribe(topic, qos=1)
        # A subscribe round trip so retained messages are in before callers look.
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        props = message.properties
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        with self.lock:
            self.messages.append(
                Received(
                    message.topic, bytes(message.payload), message.retain, correlation, time.time()
                )
            )

    def __enter__(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.connected.wait(5), "the test subscriber could not connect"
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if paho.topic_matches_sub(topic, m.topic)]

    def _settled(
        self,
        predicate: Callable[[list[Received]], bool],
        deadline: float,
        timeout: float,
        what: str,
    ) -> list[Received] | None:
        """The messages once ``predicate`` holds; None to keep polling; fails past deadline."""
        with self.lock:
            snapshot = list(self.messages)
        if predicate(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            topics = sorted({m.topic for m in snapshot})
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or predicate}; "
                f"got {len(snapshot)} messages on {topics[:10]}"
            )
        return None

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10, what: str = ""
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while (done := self._settled(predicate, deadline, timeout, what)) is None:
            time.sleep(0.02)
        return done

    async def until(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10, what: str = ""
    ) -> list[Received]:
        """``wait_for`` for async tests: polls without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while (done := self._settled(predicate, deadline, timeout, what)) is None:
            await asyncio.sleep(0.02)
        return done

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        retain: bool = False,
        correlation: bytes | None = None,
        response_topic: str | None = None,
        authorization: str | None = None,
    ) -> None:
        """``authorization``: sent as the MQTT 5 ``authorization`` user property."""
        properties = None
        if correlation is not None or response_topic is not None or authorization is not None:
            properties = Properties(PacketTypes.PUBLISH)
            if correlation is not None:
                properties.CorrelationData = correlation
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if authorization is not None:
                properties.UserProperty = ("authorization", authorization)
        self.client.publish(
            topic, payload, qos=1, retain=retain, properties=properties
        ).wait_for_publish(5)
