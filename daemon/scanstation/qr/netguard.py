"""The network guard of QR analysis: only public internet addresses, checked at connect time.

A QR code is untrusted input. Following its URL must never reach the lane's own machine, the
shop LAN, the router, a cloud metadata service (169.254.169.254) or anything else that is not
on the public internet: otherwise a printed code could probe or poke the local network.

Three layers, each enough on its own for the cases it sees:

1. :func:`check_url` (pure): the scheme must be http or https; a host written as an address,
   in any spelling the C library accepts (``127.1``, ``0x7f000001``, ``2130706433``,
   ``0177.0.0.1``, ``[::ffff:127.0.0.1]``), is normalised and judged before any DNS query;
   ``localhost`` names are refused outright.
2. :class:`GuardedResolver`: every address a name resolves to is judged; one bad address
   refuses the name (a rebinding server cannot mix a public and a private answer).
3. :func:`guarded_socket_factory`: the socket is created only for a judged address, so what
   was checked is exactly what is connected to; a DNS answer cannot change in between.

The guard applies to every redirect hop because every hop goes through the same session.
``allow_private_networks`` (a lab flag) lifts the address rules, never the scheme rule.
``allow_endpoints`` lets through exact address-and-port pairs only (``scanstation demo``
serves its sample QR code's redirect chain on one loopback port, and only that port is let
through: the rest of loopback stays refused).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from scanstation.qr import QrError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})

_LAB_HINT = "set [qr_analysis] allow_private_networks = true only in a lab"

# IPv6 prefixes that carry an IPv4 address in their low 32 bits: a public-looking IPv6
# address there may lead to a private IPv4 one through a translator.
_NAT64 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # RFC 6052 well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # RFC 8215 local-use prefix
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d form
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # CGNAT (RFC 6598)
_METADATA = ipaddress.IPv4Address("169.254.169.254")


class NetGuardError(QrError, OSError):
    """A URL or address QR analysis refuses to connect to; the message says which and why.

    An ``OSError`` so that aiohttp's connector carries it (as ``os_error``) unchanged from the
    resolver or the socket factory up to the caller.
    """


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one address may be connected to."""

    address: IPAddress
    """The address judged (IPv4-mapped and embedded forms already unwrapped)."""

    allowed: bool
    """True only for a public (globally reachable, unicast) address."""

    reason: str
    """Why not, e.g. "a loopback address"; "" when allowed."""


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, 6to4, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        return embedded
    # ::/96 except :: and ::1 themselves (judged as IPv6 below)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return embedded
    return address


def judge_address(address: IPAddress | str) -> Verdict:
    """Judge one address: only a globally reachable unicast address is allowed.

    >>> judge_address("8.8.8.8").allowed
    True
    >>> judge_address("::ffff:127.0.0.1").reason
    'a loopback address'
    >>> judge_address("100.64.0.1").reason
    'a carrier-grade NAT address (100.64.0.0/10)'
    """
    parsed = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id:
        return Verdict(parsed, False, "a scoped (link-local) IPv6 address")
    ip = _unwrap(parsed)
    reason = ""
    if ip == _METADATA:
        reason = "the cloud metadata address"
    elif ip.is_unspecified:
        reason = "the unspecified address"
    elif ip.is_loopback:
        reason = "a loopback address"
    elif ip.is_link_local:
        reason = "a link-local address"
    elif isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE:
        reason = "a carrier-grade NAT address (100.64.0.0/10)"
    elif ip.is_multicast:
        reason = "a multicast address"
    elif ip.is_private:
        reason = "a private address"
    elif ip.is_reserved:
        reason = "a reserved address"
    elif isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        reason = "a site-local address"
    elif not ip.is_global:
        reason = "not a public internet address"
    return Verdict(ip, not reason, reason)


def parse_host_address(host: str) -> IPAddress | None:
    """The address a URL host spells, in any form the C library accepts; None for a name.

    Browsers and libc read ``127.1``, ``0x7f000001``, ``2130706433`` and ``0177.0.0.1`` as
    127.0.0.1, so the guard reads them the same way before judging.

    >>> str(parse_host_address("0x7f.1"))
    '127.0.0.1'
    >>> parse_host_address("example.com") is None
    True
    """
    text = host.strip().rstrip(".").lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.replace("%25", "%")  # a zone id as written in a URL
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not all(c in "0123456789abcdefx." for c in text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def _is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class NetGuard:
    """The address policy of QR analysis: public addresses only, unless a lab says otherwise."""

    allow_private: bool = False
    """Lab flag: every address is allowed (the scheme rule still holds)."""

    allow_networks: tuple[IPNetwork, ...] = ()
    """Lab networks allowed although not public, e.g. one test server's address."""

    allow_endpoints: tuple[tuple[IPAddress, int], ...] = ()
    """Exact (address, port) pairs allowed although not public: one server, not its host."""

    def endpoint_allowed(self, address: IPAddress | str, port: int | None) -> bool:
        """Whether (address, port) is one of :attr:`allow_endpoints` (mapped forms unwrapped).

        >>> guard = NetGuard(allow_endpoints=((ipaddress.ip_address("127.0.0.1"), 8099),))
        >>> guard.endpoint_allowed("127.0.0.1", 8099), guard.endpoint_allowed("127.0.0.1", 22)
        (True, False)
        """
        if port is None or not self.allow_endpoints:
            return False
        parsed = ipaddress.ip_address(address) if isinstance(address, str) else address
        forms = {parsed, _unwrap(parsed)}
        return any(a in forms and p == port for a, p in self.allow_endpoints)

    def judge(self, address: IPAddress | str) -> Verdict:
        verdict = judge_address(address)
        if verdict.allowed or self.allow_private:
            return Verdict(verdict.address, True, "")
        parsed = ipaddress.ip_address(address) if isinstance(address, str) else address
        if any(
            a in net
            for a in {parsed, verdict.address}
            for net in self.allow_networks
            if a.version == net.version
        ):
            return Verdict(verdict.address, True, "")
        return verdict

    def check_url(self, url: str | URL) -> URL:
        """The URL parsed, when QR analysis may request it; NetGuardError saying why not.

        Names are judged again after DNS (see :class:`GuardedResolver`); this check catches
        every address written into the URL itself, without a DNS query.

        >>> str(NetGuard().check_url("https://id.gs1.org/01/09506000134352"))
        'https://id.gs1.org/01/09506000134352'
        >>> try:
        ...     NetGuard().check_url("http://2130706433/")
        ... except NetGuardError as exc:
        ...     print(exc)  # doctest: +ELLIPSIS
        refused 'http://2130706433/': 2130706433 is 127.0.0.1, a loopback address; ...
        """
        text = str(url)
        try:
            parsed = url if isinstance(url, URL) else URL(text)
        except (ValueError, TypeError) as exc:
            raise NetGuardError(f"refused {text!r}: not a valid URL ({exc})") from None
        scheme = parsed.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise NetGuardError(
                f"refused {text!r}: scheme {scheme or '(none)'!r} is not allowed; "
                "QR analysis follows http and https URLs only"
            )
        host = parsed.raw_host
        if not host:
            raise NetGuardError(f"refused {text!r}: the URL has no host")
        if self.allow_private:
            return parsed
        if _is_localhost_name(host):
            raise NetGuardError(
                f"refused {text!r}: {host} names this machine; QR analysis only connects to "
                f"public internet addresses ({_LAB_HINT})"
            )
        address = parse_host_address(host)
        if address is not None and not self.endpoint_allowed(address, parsed.port):
            verdict = self.judge(address)
            if not verdict.allowed:
                spelled = host.strip("[]")
                shown = (
                    spelled
                    if spelled == str(verdict.address)
                    else (f"{spelled} is {verdict.address}")
                )
                raise NetGuardError(
                    f"refused {text!r}: {shown}, {verdict.reason}; QR analysis only connects "
                    f"to public internet addresses ({_LAB_HINT})"
                )
        return parsed

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """Create the socket for one resolved address, refusing an address not allowed.

        The last check, made on the very address the socket will connect to.
        """
        family, type_, proto, _, sockaddr = addr_info
        if self.endpoint_allowed(str(sockaddr[0]), int(sockaddr[1])):
            return socket.socket(family=family, type=type_, proto=proto)
        verdict = self.judge(str(sockaddr[0]))
        if not verdict.allowed:
            raise NetGuardError(
                f"refused to connect to {sockaddr[0]}: {verdict.reason} ({_LAB_HINT})"
            )
        return socket.socket(family=family, type=type_, proto=proto)

    def connector(
        self, *, limit: int = 8, resolver: AbstractResolver | None = None
    ) -> aiohttp.TCPConnector:
        """A TCP connector that connects only to addresses this guard allows.

        ``resolver`` is the inner resolver asked for names (default: the system's).
        """
        if self.allow_private:
            return aiohttp.TCPConnector(limit=limit, resolver=resolver, ttl_dns_cache=60)
        return aiohttp.TCPConnector(
            limit=limit,
            resolver=GuardedResolver(self, resolver),
            socket_factory=self.socket_factory,
            ttl_dns_cache=60,
        )


def check_url(url: str | URL, *, allow_private: bool = False) -> URL:
    """:meth:`NetGuard.check_url` with the default policy (or the lab flag)."""
    return NetGuard(allow_private=allow_private).check_url(url)


class GuardedResolver(AbstractResolver):
    """Resolves a name and refuses it when any of its addresses is not allowed."""

    def __init__(self, guard: NetGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if _is_localhost_name(host) and not self._guard.allow_private:
            raise NetGuardError(f"refused {host}: it names this machine ({_LAB_HINT})")
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            verdict = self._guard.judge(result["host"])
            if not verdict.allowed:
                raise NetGuardError(
                    f"refused {host}: it resolves to {verdict.address}, {verdict.reason}; QR "
                    f"analysis only connects to public internet addresses ({_LAB_HINT})"
                )
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def find_guard_error(exc: BaseException) -> NetGuardError | None:
    """The NetGuardError inside an aiohttp connection error, if the guard caused it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NetGuardError):
            return current
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, NetGuardError):
            return os_error
        current = current.__cause__ or current.__context__
    return None
