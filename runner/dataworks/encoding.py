"""What a signature covers, encoded as the official SDK encodes it: form bodies, query strings,
timestamps."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, urlencode

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def percent_encode(s: str) -> str:
    """RFC 3986 encoding of the UTF-8 bytes: only A-Z a-z 0-9 - _ . ~ kept, uppercase hex."""
    return quote(s, safe="-_.~", encoding="utf-8")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _plus(value: str) -> str:
    """quote_plus, with a fast path for the common text that needs no escaping."""
    return value if _UNRESERVED.fullmatch(value) else quote_plus(value)


_PLAIN_FORM = re.compile(r"[A-Za-z0-9_.~=&-]*")


def form_encode(params: Mapping[str, str]) -> str:
    """The form body the SDK sends: keys sorted, quote_plus style (space is '+')."""
    items = sorted(params.items())
    text = "&".join([f"{k}={v}" for k, v in items])
    if is_plain_form(text, len(items)):
        return text
    return "&".join([f"{_plus(k)}={_plus(v)}" for k, v in items])


def is_plain_form(text: str, pairs: int) -> bool:
    """Whether `text`, `pairs` names and values joined as `name=value&...`, is its own form
    encoding: nothing to escape, and every '=' and '&' a separator (a name or value holding one
    would add to its count)."""
    return (
        _PLAIN_FORM.fullmatch(text) is not None
        and text.count("=") == pairs
        and text.count("&") == pairs - 1
    )


def wire_query(params: Mapping[str, str]) -> str:
    """A query string for the URL, in the given order, encoded as the SDK does (quote_plus)."""
    return urlencode(list(params.items()))


def timestamp_of(dt: datetime) -> str:
    """The signing timestamp: UTC, second precision, `YYYY-MM-DDThh:mm:ssZ`."""
    if dt.tzinfo is None:
        raise ValueError("timestamp_of needs an aware datetime")
    return dt.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(value: str) -> datetime:
    """The inverse of timestamp_of; raises ValueError on any other format."""
    return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
