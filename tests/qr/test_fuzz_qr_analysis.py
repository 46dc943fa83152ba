"""Fuzzing QR analysis: any scanned text goes in, a qr_analysis object comes out, nothing leaks.

No input may raise, hang, or open a connection: the harness's guard refuses every address at
connect time and its DNS answers every name with a public address, so each URL goes as far
as it can (parse, guard, resolve, connect) and must end with a clear error_message.

Budget: SCANSTATION_FUZZ_SCALE (default 1) multiplies max_examples.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import Iterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanstation.config import QrAnalysisConfig
from scanstation.qr.analysis import QrAnalyzer
from scanstation.qr.netguard import IPAddress, NetGuard, Verdict

SCALE = float(os.environ.get("SCANSTATION_FUZZ_SCALE", "1"))
KEYS = {
    "initial_url",
    "final_url",
    "hops",
    "hop_count",
    "resolver_domain",
    "resolver_type",
    "is_closient_resolver",
    "extracted_gtin",
    "error_message",
}


class PublicDns(AbstractResolver):
    """Answers every name with one public address (no real DNS query is made)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="93.184.216.34",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        pass


class RefuseEveryConnection(NetGuard):
    """The default guard, except that no address at all may be connected to."""

    def judge(self, address: IPAddress | str) -> Verdict:
        verdict = super().judge(address)
        if not verdict.allowed:
            return verdict
        return Verdict(verdict.address, False, "refused by the fuzz harness")


@pytest.fixture(scope="module")
def analyzer() -> Iterator[tuple[asyncio.Runner, QrAnalyzer]]:
    with asyncio.Runner() as runner:
        qr = QrAnalyzer(QrAnalysisConfig(timeout=2.0), resolver=PublicDns())
        qr.guard = RefuseEveryConnection()
        try:
            yield runner, qr
        finally:
            runner.run(qr.close())


hosts = st.sampled_from(
    [
        "id.gs1.org",
        "bit.ly",
        "closient.com",
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[fe80::1%25eth0]",
        "169.254.169.254",
        "100.64.0.1",
        "localhost",
        "xn--bcher-kva.example",
        "bücher.example",
        "a..b",
        "-x-.example",
        "",
        "user:pass@example.com",
        "example.com:0",
        "example.com:99999",
        "example.com:-1",
        "[::1",
        "%00",
    ]
) | st.text(max_size=20)
paths = st.sampled_from(
    ["", "/", "/01/09506000134352", "/01/09506000134352/10/ABC?17=270101", "/%zz", "/../.."]
) | st.text(max_size=30)
schemes = st.sampled_from(
    ["http://", "https://", "HTTP://", "ftp://", "file://", "javascript:", "", "http:/", "//"]
)
urls = st.builds(lambda s, h, p: s + h + p, schemes, hosts, paths) | st.text(max_size=120)


@given(urls)
@settings(
    max_examples=max(1, int(400 * SCALE)),
    deadline=None,  # each analysis is timed below
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
def test_fuzz_qr_analyzer_any_scanned_text(
    analyzer: tuple[asyncio.Runner, QrAnalyzer], url: str
) -> None:
    runner, qr = analyzer
    started = time.monotonic()
    result = runner.run(qr.analyze(url))
    assert time.monotonic() - started < 3.0
    assert set(result) == KEYS
    assert result["hops"] == []
    assert result["hop_count"] == 0
    assert result["error_message"]
    assert result["resolver_type"] in ("CLOSIENT", "GS1_DL", "URL_SHORTENER", "UNKNOWN")
    assert result["extracted_gtin"] in ("", "09506000134352")


def test_fuzz_harness_refuses_public_addresses_too() -> None:
    """The harness's guard refuses what the default guard would allow."""
    assert not RefuseEveryConnection().judge(ipaddress.ip_address("8.8.8.8")).allowed
