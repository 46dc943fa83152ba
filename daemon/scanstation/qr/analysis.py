"""QR analysis: follow an http(s) QR code's redirect chain safely and say what resolves it.

Each hop is requested by hand (``allow_redirects=False``) through the network guard
(:mod:`scanstation.qr.netguard`), so every hop is checked after DNS and at connect time. The
chain is capped in redirects (``max_hops``), in total time (``timeout``) and in body bytes
read (``max_body_bytes``, only for an HTML page that redirects with ``<meta refresh>``).

The result is the SPEC §5 ``qr_analysis`` object. ``error_message`` is the one field that
tells a failure apart: "" when the chain was followed to its end (whatever the final HTTP
status), else why it was not (offline, refused by the guard, timed out, too many redirects).
Only complete results are cached, so a retry after the network is back analyses afresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import ipaddress
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

from scanstation import __version__
from scanstation.barcode.interpret import interpret
from scanstation.config import QrAnalysisConfig
from scanstation.config.analysis import endpoint_of
from scanstation.qr.netguard import NetGuard, NetGuardError, find_guard_error

log = logging.getLogger(__name__)

ResolverType = Literal["CLOSIENT", "GS1_DL", "URL_SHORTENER", "DIRECT", "UNKNOWN"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Well-known public URL shorteners; [qr_analysis] shortener_domains adds more.
SHORTENER_DOMAINS = frozenset(
    {
        "bit.ly",
        "bitly.com",
        "buff.ly",
        "cutt.ly",
        "goo.gl",
        "is.gd",
        "lnkd.in",
        "ow.ly",
        "qrco.de",
        "rb.gy",
        "rebrand.ly",
        "s.id",
        "shorturl.at",
        "t.co",
        "t.ly",
        "tiny.cc",
        "tinyurl.com",
        "v.gd",
        "qr.codes",
        "qrs.ly",
        "l.ead.me",
        "me-qr.com",
    }
)

# Response headers kept per hop: enough to see where and how a resolver sends the scanner.
SELECTED_HEADERS = (
    "location",
    "content-type",
    "content-length",
    "link",
    "refresh",
    "cache-control",
    "server",
)
HEADER_VALUE_MAX = 500

USER_AGENT = f"scanstation/{__version__} (QR analysis)"

_META_REFRESH = re.compile(
    rb"""<meta[^>]+http-equiv\s*=\s*["']?refresh["']?[^>]*>""", re.IGNORECASE
)
_CONTENT_ATTR = re.compile(rb"""content\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_REFRESH_URL = re.compile(r"""^\s*\d*(?:\.\d*)?\s*[;,]\s*url\s*=\s*['"]?([^'"]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Hop:
    """One request of the chain."""

    url: str
    """The URL requested."""

    status_code: int
    """The HTTP status the server answered with."""

    headers: dict[str, str]
    """The selected response headers (lower-case names, values cut at 500 characters)."""

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "status_code": self.status_code, "headers": dict(self.headers)}


@dataclass(frozen=True, slots=True)
class QrAnalysis:
    """Where a QR code's URL leads (SPEC §5 ``qr_analysis``)."""

    initial_url: str
    """The URL as scanned."""

    final_url: str
    """The last URL requested (the initial URL when nothing could be requested)."""

    hops: tuple[Hop, ...]
    """Every request made, in order; empty when the first one could not be made."""

    resolver_domain: str
    """The host of the initial URL (lower case, no port): the service the code points at."""

    resolver_type: ResolverType
    """CLOSIENT, GS1_DL, URL_SHORTENER, DIRECT or UNKNOWN (see :func:`classify`)."""

    is_closient_resolver: bool
    """True when any URL of the chain is on a Closient resolver domain."""

    extracted_gtin: str
    """The GTIN-14 of the first URL in the chain that is a GS1 Digital Link, or ""."""

    error_message: str = ""
    """"" when the chain was followed to its end; else why not (the capture then FAILs)."""

    from_cache: bool = field(default=False, compare=False)
    """True when this result was reused from the cache (not part of the JSON)."""

    @property
    def hop_count(self) -> int:
        """The number of requests made (redirects followed + 1, or 0)."""
        return len(self.hops)

    @property
    def failed(self) -> bool:
        return bool(self.error_message)

    def to_json(self) -> dict[str, Any]:
        return {
            "initial_url": self.initial_url,
            "final_url": self.final_url,
            "hops": [hop.to_json() for hop in self.hops],
            "hop_count": self.hop_count,
            "resolver_domain": self.resolver_domain,
            "resolver_type": self.resolver_type,
            "is_closient_resolver": self.is_closient_resolver,
            "extracted_gtin": self.extracted_gtin,
            "error_message": self.error_message,
        }


# ---- pure parts -------------------------------------------------------------------------


def host_of(url: str) -> str:
    """The lower-case host of a URL without a trailing dot, or "" when there is none."""
    try:
        host = URL(url).host
    except (ValueError, TypeError):
        return ""
    return (host or "").rstrip(".").lower()


def in_domains(host: str, domains: Iterable[str]) -> bool:
    """True when ``host`` is one of ``domains`` or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in (d.strip(".").lower() for d in domains))


def digital_link_gtin(url: str) -> str:
    """The GTIN-14 when ``url`` is a valid GS1 Digital Link, else ""."""
    try:
        result = interpret(url)
    except Exception:  # the interpreter never raises on bad input; a bug must not stop us
        log.exception("interpreting %r failed", url)
        return ""
    if result.kind == "digital_link" and result.valid:
        return result.gtin
    return ""


def classify(
    initial_url: str,
    hops: Sequence[Hop],
    *,
    closient_domains: Iterable[str],
    shortener_domains: Iterable[str] = SHORTENER_DOMAINS,
) -> tuple[ResolverType, bool, str]:
    """Resolver type, is_closient_resolver and extracted GTIN of a chain.

    The type is judged on the first rule that holds:

    1. CLOSIENT: the initial URL is on a Closient domain;
    2. GS1_DL: the initial URL is itself a GS1 Digital Link;
    3. URL_SHORTENER: the initial URL is on a known shortener;
    4. DIRECT: the first request was answered without a redirect;
    5. GS1_DL: the chain redirected to a Digital Link;
    6. UNKNOWN: it redirected elsewhere, or could not be followed.

    >>> classify("https://bit.ly/x", [], closient_domains=["closient.com"])
    ('URL_SHORTENER', False, '')
    """
    closient = list(closient_domains)
    urls = [initial_url, *(hop.url for hop in hops)]
    # Location targets count too: a chain stopped by a cap still shows where it led.
    urls += [hop.headers["location"] for hop in hops if "location" in hop.headers]
    gtin = next((g for g in map(digital_link_gtin, urls) if g), "")
    is_closient = any(in_domains(host_of(u), closient) for u in urls)
    initial_host = host_of(initial_url)
    resolver: ResolverType
    if in_domains(initial_host, closient):
        resolver = "CLOSIENT"
    elif digital_link_gtin(initial_url):
        resolver = "GS1_DL"
    elif in_domains(initial_host, shortener_domains):
        resolver = "URL_SHORTENER"
    elif hops and hops[0].status_code not in REDIRECT_STATUSES and len(hops) == 1:
        resolver = "DIRECT"
    elif gtin:
        resolver = "GS1_DL"
    else:
        resolver = "UNKNOWN"
    return resolver, is_closient, gtin


def selected_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping for a hop, lower-case names, values cut to length."""
    kept = {}
    for name in SELECTED_HEADERS:
        value = headers.get(name)
        if value is not None:
            kept[name] = value[:HEADER_VALUE_MAX]
    return kept


def refresh_target(value: str) -> str | None:
    """The URL of a Refresh header or meta refresh content ("0; url=…"), else None.

    >>> refresh_target("0; URL='https://id.gs1.org/01/09506000134352'")
    'https://id.gs1.org/01/09506000134352'
    """
    match = _REFRESH_URL.match(html.unescape(value))
    return match.group(1).strip() if match else None


def meta_refresh_target(body: bytes) -> str | None:
    """The URL an HTML page redirects to with ``<meta http-equiv="refresh">``, else None."""
    tag = _META_REFRESH.search(body)
    if tag is None:
        return None
    content = _CONTENT_ATTR.search(tag.group(0))
    if content is None:
        return None
    raw = next(g for g in content.groups() if g is not None)
    return refresh_target(raw.decode("utf-8", "replace"))


# ---- the network edge -------------------------------------------------------------------


class _ChainError(Exception):
    """The chain cannot go on; the message is the capture's error_message."""


def _describe(exc: BaseException, url: str, timeout: float) -> str:
    """One clear line for a failed request."""
    guard = find_guard_error(exc)
    if guard is not None:
        return str(guard)
    host = host_of(url) or url
    offline = "the device may be offline; retry the capture when the network is back"
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s following {url} ({offline})"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"could not resolve {host}: {reason} ({offline})"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"{host} presented a TLS certificate that is not valid: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake with {host} failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"could not connect to {host} port {exc.port}: {reason} ({offline})"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"{url} is not a URL that can be requested ({exc})"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return f"{host} closed the connection before answering {url} ({offline})"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"{host} sent a malformed HTTP response for {url}: {exc}"
    return f"requesting {url} failed: {type(exc).__name__}: {exc}"


class QrAnalyzer:
    """Follows QR code URLs through the network guard; one HTTP session, a bounded cache."""

    def __init__(
        self, config: QrAnalysisConfig, *, resolver: AbstractResolver | None = None
    ) -> None:
        """``resolver`` answers DNS queries (default: the system's); the guard judges them."""
        self.config = config
        self.guard = NetGuard(
            allow_private=config.allow_private_networks,
            allow_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in config.allow_networks
            ),
            allow_endpoints=tuple(endpoint_of(e) for e in config.allow_endpoints),
        )
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._cache: OrderedDict[str, tuple[float, QrAnalysis]] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[QrAnalysis]] = {}
        self._shorteners = SHORTENER_DOMAINS | {d.lower() for d in config.shortener_domains}
        self.requests = 0
        """HTTP requests attempted so far (for tests and telemetry)."""

    async def analyze(self, url: str) -> dict[str, Any]:
        """The SPEC §5 qr_analysis object for ``url``; never raises for a bad or dead URL."""
        return (await self.analyze_result(url)).to_json()

    async def analyze_result(self, url: str) -> QrAnalysis:
        """Like :meth:`analyze`, as a :class:`QrAnalysis`."""
        url = url.strip()
        cached = self._cached(url)
        if cached is not None:
            return cached
        # Concurrent scans of the same code share one walk of the chain.
        while (pending := self._in_flight.get(url)) is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()
        future: asyncio.Future[QrAnalysis] = asyncio.get_running_loop().create_future()
        self._in_flight[url] = future
        try:
            result = await self._analyze(url)
            future.set_result(result)
        finally:
            if not future.done():
                future.cancel()  # cancelled: a waiter then walks the chain itself
            self._in_flight.pop(url, None)
        if not result.failed:
            self._store(url, result)
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- cache ---------------------------------------------------------------------------

    def _cached(self, url: str) -> QrAnalysis | None:
        entry = self._cache.get(url)
        if entry is None:
            return None
        stored_at, result = entry
        if time.monotonic() - stored_at > self.config.cache_seconds:
            del self._cache[url]
            return None
        self._cache.move_to_end(url)
        return dataclasses.replace(result, from_cache=True)

    def _store(self, url: str, result: QrAnalysis) -> None:
        if self.config.cache_seconds <= 0 or self.config.cache_entries <= 0:
            return
        self._cache[url] = (time.monotonic(), result)
        self._cache.move_to_end(url)
        while len(self._cache) > self.config.cache_entries:
            self._cache.popitem(last=False)

    # ---- the walk ------------------------------------------------------------------------

    def _result(self, initial: str, hops: Sequence[Hop], error: str) -> QrAnalysis:
        resolver, is_closient, gtin = classify(
            initial,
            hops,
            closient_domains=self.config.closient_domains,
            shortener_domains=self._shorteners,
        )
        return QrAnalysis(
            initial_url=initial,
            final_url=hops[-1].url if hops else initial,
            hops=tuple(hops),
            resolver_domain=host_of(initial),
            resolver_type=resolver,
            is_closient_resolver=is_closient,
            extracted_gtin=gtin,
            error_message=error,
        )

    async def _analyze(self, initial: str) -> QrAnalysis:
        hops: list[Hop] = []
        if not self.config.enabled:
            return self._result(initial, hops, "")
        current = initial
        try:
            async with asyncio.timeout(self.config.timeout):
                seen = {initial}
                while True:
                    target = self.guard.check_url(current)
                    hop, next_url = await self._request(target)
                    hops.append(hop)
                    if next_url is None:
                        return self._result(initial, hops, "")
                    if len(hops) > self.config.max_hops:
                        raise _ChainError(
                            f"stopped after {self.config.max_hops} redirects "
                            f"([qr_analysis] max_hops); the chain goes on to {next_url}"
                        )
                    if next_url in seen:
                        raise _ChainError(f"redirect loop: {current} leads back to {next_url}")
                    seen.add(next_url)
                    current = next_url
        except (_ChainError, NetGuardError) as exc:
            return self._result(initial, hops, str(exc))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            return self._result(initial, hops, _describe(exc, current, self.config.timeout))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=self.guard.connector(resolver=self._resolver),
                cookie_jar=aiohttp.DummyCookieJar(),  # no state carried between codes
                trust_env=False,  # never through a proxy from the environment
                auto_decompress=False,  # bodies are read raw: no decompression bombs
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
                    "Accept-Encoding": "identity",
                },
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            )
        return self._session

    async def _request(self, target: URL) -> tuple[Hop, str | None]:
        """Request one hop; the hop and the URL it sends us on to (None at the end)."""
        self.requests += 1
        async with self._client().get(target, allow_redirects=False) as response:
            hop = Hop(str(target), response.status, selected_headers(response.headers))
            location = _next_location(response.status, response.headers)
            if location is None and response.status == 200:
                location = await self._meta_refresh(response)
        if location is None:
            return hop, None
        try:
            next_url = target.join(URL(location))
        except (ValueError, TypeError):
            raise _ChainError(
                f"{target} redirects to {location!r}, which is not a valid URL"
            ) from None
        return hop, str(next_url)

    async def _meta_refresh(self, response: aiohttp.ClientResponse) -> str | None:
        if self.config.max_body_bytes <= 0 or response.content_type not in (
            "text/html",
            "application/xhtml+xml",
        ):
            return None
        body = bytearray()
        limit = self.config.max_body_bytes
        while len(body) < limit:
            chunk = await response.content.read(limit - len(body))
            if not chunk:
                break
            body += chunk
        return meta_refresh_target(bytes(body))


def _next_location(status: int, headers: CIMultiDictProxy[str]) -> str | None:
    if status in REDIRECT_STATUSES:
        return headers.get("Location") or None
    if (refresh := headers.get("Refresh")) is not None:
        return refresh_target(refresh)
    return None
