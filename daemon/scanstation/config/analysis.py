"""[classifier] and [qr_analysis]: what the station works out from photos and URLs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import (
    Field,
    field_validator,
)

from scanstation.config.base import Section


def endpoint_of(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``"127.0.0.1:8099"`` or ``"[::1]:8099"`` as (address, port); ValueError saying why not."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = -1
    if not sep or number < 1 or number > 65535:
        raise ValueError(
            f"allow_endpoints entry {text!r} is not an endpoint; expected address:port such "
            "as '127.0.0.1:8099' or '[::1]:8099' (an address, not a name)"
        )
    return address, number


class ClassifierConfig(Section):
    enabled: bool = Field(
        True, description="Classify IMAGE captures and no-read frames (ENRICHING, RESOLVING)"
    )
    model: Path | None = Field(
        None,
        description="An image-classification .tflite; default: the shipped EfficientNet-Lite0",
    )
    labels: Path | None = Field(
        None,
        description="Labels file, one class per line; default: <model>.txt, labels.txt or "
        "imagenet_labels.txt beside the model",
    )
    threads: int = Field(2, ge=1, le=16, description="Interpreter threads (XNNPACK)")
    top_k: int = Field(5, ge=1, le=50, description="Classes kept per image, best first")
    min_confidence: float = Field(
        0.2, ge=0, le=1, description="Propose nothing below this score (0-1)"
    )
    resolve_threshold: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Least cosine similarity to a product's reference photo for proposing "
        "that product (looks only propose; a GTIN read from the capture decides)",
    )
    center_crop: bool = Field(
        True, description="Crop photos to the model's aspect ratio (centre) before resizing"
    )
    idle_unload_s: float = Field(
        600.0,
        ge=0,
        le=86400,
        description="Seconds unused after which the model is released (0: kept once loaded); "
        "it is loaded on the first photo, never at start-up",
    )


class QrAnalysisConfig(Section):
    enabled: bool = Field(True, description="Follow the redirect chain of http(s) QR codes")
    max_hops: int = Field(
        5, ge=0, le=20, description="Redirects followed at most (0: only the first request)"
    )
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds for the whole chain")
    allow_private_networks: bool = Field(
        False, description="Lab only: allow loopback/private addresses (never on a lane)"
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Lab only: networks (CIDR) allowed although not public, e.g. 10.9.0.0/24",
    )
    allow_endpoints: list[str] = Field(
        default_factory=list,
        description="Lab only: exact address:port servers allowed although not public, e.g. "
        "127.0.0.1:8099 (that port only; the rest of the host stays refused)",
    )
    max_body_bytes: int = Field(
        65536, ge=0, le=4 * 1024 * 1024, description="Bytes of a final page read at most"
    )
    cache_seconds: float = Field(
        600, ge=0, description="How long an analysed URL's result is reused (0: no cache)"
    )
    cache_entries: int = Field(1024, ge=0, le=100_000, description="Results kept in the cache")
    closient_domains: list[str] = Field(
        default_factory=lambda: ["closient.com"],
        description="Domains (and their subdomains) of Closient resolvers",
    )
    shortener_domains: list[str] = Field(
        default_factory=list,
        description="Extra URL-shortener domains besides the built-in list (bit.ly, …)",
    )

    @field_validator("allow_endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        for text in value:
            endpoint_of(text)
        return value

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:

        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"allow_networks entry {text!r} is not a network; expected CIDR such as "
                    "'10.9.0.0/24' or an address such as '192.168.1.20'"
                ) from None
        return value
