"""Endpoints: region URLs, the override, and plain http only to loopback."""

from __future__ import annotations

import pytest

from runner.dataworks.endpoints import EndpointError, Endpoints, check_endpoint, region_endpoint


def test_public_and_vpc_endpoints() -> None:
    """Regions map to dataworks.<region> and dataworks-vpc.<region> over https."""
    assert region_endpoint("cn-shanghai") == "https://dataworks.cn-shanghai.aliyuncs.com"
    assert (
        region_endpoint("cn-beijing", vpc=True) == "https://dataworks-vpc.cn-beijing.aliyuncs.com"
    )
    assert region_endpoint("cn-qingdao") == "https://dataworks.aliyuncs.com"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "https://gw.example.com"],
)
def test_accepted_endpoints(url: str) -> None:
    """https anywhere and http to loopback are accepted."""
    assert Endpoints(url).base_url("cn-shanghai") == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://10.0.0.5:8080", "plain http"),
        ("http://gw.example.com", "plain http"),
        ("ftp://127.0.0.1", "not an http"),
        ("https://gw.example.com/path", "path"),
        ("127.0.0.1:8080", "not an http"),
        ("http://user:pa55word@127.0.0.1:8080", "user info"),
        ("https://user@gw.example.com", "user info"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://127.0.0.1:port", "not a valid URL"),
        ("http://127.0.0.1:0", "port 0"),
        ("http://[::1:8080", "not a valid URL"),
    ],
)
def test_refused_endpoints(url: str, fragment: str) -> None:
    """Plain http beyond loopback, other schemes and paths are refused with the reason."""
    with pytest.raises(EndpointError, match=fragment):
        check_endpoint(url)


def test_a_refusal_never_repeats_the_password() -> None:
    """The message for an endpoint with user info names the host, never the password."""
    with pytest.raises(EndpointError) as raised:
        check_endpoint("http://admin:pa55word@127.0.0.1:8080")
    assert "pa55word" not in str(raised.value)
    assert "127.0.0.1:8080" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        (None, False),
        ("http://127.0.0.1:8080", True),
        ("http://[::1]:9", True),
        ("https://gw.example.com", False),
    ],
)
def test_endpoints_know_when_they_are_loopback(url: str | None, loopback: bool) -> None:
    """Only an override to a loopback host is loopback (downloads from loopback need it)."""
    assert Endpoints(url).loopback is loopback
