"""The network guard: which addresses and URLs QR analysis may reach, checked at connect time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from scanstation.qr.netguard import (
    GuardedResolver,
    NetGuard,
    NetGuardError,
    check_url,
    find_guard_error,
    judge_address,
    parse_host_address,
)


class FakeDns(AbstractResolver):
    """A DNS server in a dict: name -> addresses; unknown names fail like NXDOMAIN."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        pass


@dataclass
class Listener:
    """A plain TCP listener on 127.0.0.1 that counts the connections it accepts."""

    port: int = 0
    connections: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    state = Listener()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    state.server = await asyncio.start_server(accept, "127.0.0.1", 0)
    state.port = state.server.sockets[0].getsockname()[1]
    yield state
    state.server.close()
    await state.server.wait_closed()


# ---- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "unwrapped", "reason"),
    [
        ("127.0.0.1", "127.0.0.1", "a loopback address"),
        ("127.255.0.9", "127.255.0.9", "a loopback address"),
        ("10.1.2.3", "10.1.2.3", "a private address"),
        ("172.16.0.1", "172.16.0.1", "a private address"),
        ("192.168.1.1", "192.168.1.1", "a private address"),
        ("100.64.0.1", "100.64.0.1", "a carrier-grade NAT address (100.64.0.0/10)"),
        ("100.127.255.254", "100.127.255.254", "a carrier-grade NAT address (100.64.0.0/10)"),
        ("169.254.169.254", "169.254.169.254", "the cloud metadata address"),
        ("169.254.1.1", "169.254.1.1", "a link-local address"),
        ("224.0.0.1", "224.0.0.1", "a multicast address"),
        ("239.255.255.250", "239.255.255.250", "a multicast address"),
        ("240.0.0.1", "240.0.0.1", "a private address"),
        ("255.255.255.255", "255.255.255.255", "a private address"),
        ("0.0.0.0", "0.0.0.0", "the unspecified address"),
        ("198.18.0.1", "198.18.0.1", "a private address"),
        ("192.0.2.1", "192.0.2.1", "a private address"),
        ("::1", "::1", "a loopback address"),
        ("::", "::", "the unspecified address"),
        ("::ffff:127.0.0.1", "127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "10.0.0.1", "a private address"),
        ("::ffff:169.254.169.254", "169.254.169.254", "the cloud metadata address"),
        ("::127.0.0.1", "127.0.0.1", "a loopback address"),
        ("2002:7f00:1::", "127.0.0.1", "a loopback address"),
        ("64:ff9b::a00:1", "10.0.0.1", "a private address"),
        ("fe80::1", "fe80::1", "a link-local address"),
        ("fc00::1", "fc00::1", "a private address"),
        ("fd12:3456::1", "fd12:3456::1", "a private address"),
        ("ff02::1", "ff02::1", "a multicast address"),
        ("2001:db8::1", "2001:db8::1", "a private address"),
    ],
)
def test_judge_address_refuses_non_public(address: str, unwrapped: str, reason: str) -> None:
    verdict = judge_address(address)
    assert (str(verdict.address), verdict.allowed, verdict.reason) == (unwrapped, False, reason)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888", "::ffff:8.8.8.8"]
)
def test_judge_address_allows_public(address: str) -> None:
    verdict = judge_address(address)
    assert (verdict.allowed, verdict.reason) == (True, "")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::1]", "::1"),
        ("id.gs1.org", None),
        ("deadbeef", None),
        ("1.2.3.4.5", None),
        ("", None),
    ],
)
def test_parse_host_address_reads_every_spelling(host: str, address: str | None) -> None:
    parsed = parse_host_address(host)
    assert (str(parsed) if parsed is not None else None) == address


# ---- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1/", "127.0.0.1, a loopback address"),
        ("http://127.1/", "127.1 is 127.0.0.1, a loopback address"),
        ("http://0x7f000001/", "0x7f000001 is 127.0.0.1, a loopback address"),
        ("http://2130706433/", "2130706433 is 127.0.0.1, a loopback address"),
        ("http://0177.0.0.1/", "0177.0.0.1 is 127.0.0.1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "is 127.0.0.1, a loopback address"),
        ("http://[::1]:8080/", "::1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata address"),
        ("http://100.64.0.1/", "a carrier-grade NAT address"),
        ("https://10.0.0.1/admin", "a private address"),
        ("http://192.168.1.1/", "a private address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://0.0.0.0:8080/", "the unspecified address"),
        ("http://[fe80::1%25eth0]/", "a scoped (link-local) IPv6 address"),
        ("http://[2002:7f00:1::]/", "is 127.0.0.1, a loopback address"),
        ("http://localhost:8080/", "localhost names this machine"),
        ("http://LOCALHOST./", "names this machine"),
        ("http://printer.localhost/", "names this machine"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("ftp://example.com/x", "scheme 'ftp' is not allowed"),
        ("gopher://example.com:70/", "scheme 'gopher' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("data:text/html,hi", "scheme 'data' is not allowed"),
        ("example.com/01/09506000134352", "scheme '(none)' is not allowed"),
        ("http:///nohost", "the URL has no host"),
    ],
)
def test_check_url_refuses(url: str, says: str) -> None:
    with pytest.raises(NetGuardError) as info:
        check_url(url)
    assert says in str(info.value)
    assert str(info.value).startswith("refused ")


@pytest.mark.parametrize(
    "url",
    [
        "https://id.gs1.org/01/09506000134352",
        "http://example.com:8080/p?q=1",
        "HTTPS://Example.COM/",
        "http://8.8.8.8/",
        "http://[2001:4860:4860::8888]/",
    ],
)
def test_check_url_allows_public(url: str) -> None:
    assert str(check_url(url)) == str(check_url(url))  # parses and does not raise


def test_check_url_lab_flag_lifts_addresses_not_schemes() -> None:
    assert check_url("http://127.0.0.1:9/", allow_private=True).port == 9
    assert check_url("http://localhost/", allow_private=True).host == "localhost"
    with pytest.raises(NetGuardError, match="scheme 'file'"):
        check_url("file:///etc/passwd", allow_private=True)


def test_netguard_allow_networks_is_exact() -> None:
    import ipaddress

    guard = NetGuard(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert guard.check_url("http://127.0.0.1:8080/").port == 8080
    assert guard.judge("::ffff:127.0.0.1").allowed
    for url in ("http://127.0.0.2/", "http://10.0.0.1/", "http://localhost/"):
        with pytest.raises(NetGuardError):
            guard.check_url(url)


# ---- resolver and connect time ----------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "refused"),
    [
        (["127.0.0.1"], "resolves to 127.0.0.1, a loopback address"),
        (["93.184.216.34", "10.0.0.5"], "resolves to 10.0.0.5, a private address"),
        (["169.254.169.254"], "the cloud metadata address"),
        (["::ffff:192.168.0.1"], "resolves to 192.168.0.1, a private address"),
        (["100.100.100.200"], "a carrier-grade NAT address"),
    ],
)
async def test_guarded_resolver_refuses_names_with_any_bad_answer(
    answers: list[str], refused: str
) -> None:
    resolver = GuardedResolver(NetGuard(), FakeDns({"qr.example": answers}))
    with pytest.raises(NetGuardError) as info:
        await resolver.resolve("qr.example", 80)
    assert refused in str(info.value)


async def test_guarded_resolver_passes_public_answers() -> None:
    resolver = GuardedResolver(NetGuard(), FakeDns({"id.gs1.org": ["34.117.59.81"]}))
    [answer] = await resolver.resolve("id.gs1.org", 443)
    assert (answer["host"], answer["port"]) == ("34.117.59.81", 443)


def test_netguard_socket_factory_checks_the_connected_address() -> None:
    guard = NetGuard()
    with pytest.raises(NetGuardError, match=r"refused to connect to 127\.0\.0\.1: a loopback"):
        guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(NetGuardError, match="a link-local address"):
        guard.socket_factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1", 80, 0, 0)))
    sock = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 80)))
    sock.close()


async def test_netguard_connector_never_connects_to_a_rebound_name(listener: Listener) -> None:
    """DNS says a public-looking name is 127.0.0.1: no connection is made."""
    dns = FakeDns({"rebind.example": ["127.0.0.1"]})
    async with aiohttp.ClientSession(connector=NetGuard().connector(resolver=dns)) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(f"http://rebind.example:{listener.port}/")
    guard_error = find_guard_error(info.value)
    assert guard_error is not None
    assert "resolves to 127.0.0.1, a loopback address" in str(guard_error)
    assert (dns.queries, listener.connections) == (["rebind.example"], 0)


async def test_netguard_connector_refuses_literal_addresses_at_connect_time(
    listener: Listener,
) -> None:
    """Even a request that skipped check_url cannot reach 127.0.0.1 through the connector."""
    async with aiohttp.ClientSession(connector=NetGuard().connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(f"http://127.0.0.1:{listener.port}/")
    assert "refused to connect to 127.0.0.1" in str(find_guard_error(info.value))
    assert listener.connections == 0


async def test_netguard_lab_connector_reaches_the_lab(listener: Listener) -> None:
    async with (
        aiohttp.ClientSession(connector=NetGuard(allow_private=True).connector()) as session,
        session.get(f"http://127.0.0.1:{listener.port}/") as response,
    ):
        assert (response.status, await response.text()) == (200, "ok")
    assert listener.connections == 1


def test_netguard_allow_endpoints_is_one_port_of_one_address() -> None:
    import ipaddress

    guard = NetGuard(allow_endpoints=((ipaddress.ip_address("127.0.0.1"), 8099),))
    assert guard.check_url("http://127.0.0.1:8099/q/demo").port == 8099
    assert guard.check_url("http://[::ffff:127.0.0.1]:8099/").port == 8099
    for url in ("http://127.0.0.1:8098/", "http://127.0.0.1/", "http://localhost:8099/"):
        with pytest.raises(NetGuardError):
            guard.check_url(url)
    assert not guard.judge("127.0.0.1").allowed  # the address alone stays refused
    info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 8099))
    guard.socket_factory(info).close()
    with pytest.raises(NetGuardError):
        guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 22)))
