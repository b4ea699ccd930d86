"""Region → endpoint, as the DataWorks endpoint page lists them; --endpoint overrides all."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# Regions whose OpenAPI is served by the central endpoint.
CENTRAL_REGIONS = frozenset({"cn-huhehaote", "cn-qingdao"})
CENTRAL_HOST = "dataworks.aliyuncs.com"


class EndpointError(ValueError):
    """An endpoint URL that cannot be used."""


def region_endpoint(region: str, *, vpc: bool = False) -> str:
    """The public (or VPC) HTTPS endpoint of a region."""
    if region in CENTRAL_REGIONS:
        return f"https://{CENTRAL_HOST}"
    prefix = "dataworks-vpc" if vpc else "dataworks"
    return f"https://{prefix}.{region}.aliyuncs.com"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str) -> str:
    """Validate an --endpoint URL: https anywhere, plain http only to a loopback address; no
    user info (it would be sent nowhere and shown everywhere), a port in 1..65535. The messages
    never repeat what came before the host (it may be a password)."""
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port out of range or not a number
        raise EndpointError(f"endpoint is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise EndpointError("endpoint is not an http(s) URL with a host")
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EndpointError(f"endpoint {shown} must not carry user info (user:password@)")
    if port == 0:
        raise EndpointError(f"endpoint {shown} has port 0")
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise EndpointError(f"endpoint {shown} uses plain http to a non-loopback host; use https")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EndpointError(f"endpoint {shown} must not carry a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


class Endpoints:
    """Resolves the base URL for a region, honouring a single override."""

    def __init__(self, override: str | None = None, *, vpc: bool = False) -> None:
        self._override = check_endpoint(override) if override else None
        self._vpc = vpc

    @property
    def loopback(self) -> bool:
        """Whether every request goes to a loopback address (the simulator, a local gateway)."""
        return self._override is not None and is_loopback_host(
            urlsplit(self._override).hostname or ""
        )

    @property
    def override(self) -> str | None:
        """The --endpoint URL every request goes to, if one was given."""
        return self._override

    def base_url(self, region: str, *, host: str | None = None) -> str:
        """Where a region's requests go: the override, else `host` (a product's one central
        host) or the region's DataWorks endpoint."""
        if self._override:
            return self._override
        return f"https://{host}" if host else region_endpoint(region, vpc=self._vpc)

    def limit_scope(self, region: str) -> str:
        """What a rate limit is counted against besides the account: the region, as the service
        counts it; or, with an override, that one server, which every region's requests reach."""
        return self._override or region
