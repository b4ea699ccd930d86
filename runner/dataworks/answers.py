"""Reading the service's answers: every answer becomes a checked value or a classified ApiError.

Nothing a server (or a proxy in front of it) sends is trusted: the body must be a JSON object of
bounded nesting with finite numbers; ids must be integers in 1..2^63-1; codes, request ids,
statuses and URLs must have their expected shapes. An answer that is not understood is
*malformed*: to a call that changes state its outcome is unknown (the task is looked up before
anything is sent again), to a read it is simply retried. So no value from an answer reaches the
journal unchecked, and no answer is ever raised as an unexpected error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from runner.dataworks.transport import HttpResponse
from runner.models import (
    DUPLICATE_NAME_CODE,
    ApiError,
    ErrorKind,
    Migration,
    MigrationPage,
)
from runner.retry import MAX_RETRY_AFTER

MALFORMED = "MalformedResponse"
MAX_ID = 2**63 - 1  # ids are int64 (dataworks-api.md §3) and the journal stores them as such
MAX_URL = 8192
MAX_TEXT = 4096  # names and messages before they are cleaned and cut further
MAX_RETRY_AFTER_DIGITS = 12  # milliseconds: more digits than this is not a delay but garbage

FATAL_CODES = frozenset(
    {
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeyId",
        "InvalidAccessKeySecret",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Mismatch",
        "InvalidSecurityToken.MismatchWithAccessKey",
        "InvalidSecurityToken.Malformed",
        "Throttling.Api.Risk",  # the daily quota is spent
        "Throttling.Resource",  # the edition's call quota is spent
        "Forbidden.Not.Server",  # the OpenAPI is not offered in this region
        "InvalidApi.NotFound",
        "InvalidProduct.NotFound",
    }
)
# 5xx codes that describe the request, not the service's health: retrying cannot help.
PERMANENT_CODES = frozenset({"Invalid.Wkbench.Parameter"})
# Refused before any processing: safe to send again as it is (re-signed).
REFUSED_CODES = frozenset({"SignatureNonceUsed"})

CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
STATUS = re.compile(r"[A-Z][A-Z_]{0,63}")


def classify(status: int, code: str, *, mutating: bool = False) -> ErrorKind:
    """The kind of an error answer, from its HTTP status and code.

    A server error on a call that changes state may come after the change was made (a gateway
    5xx, an error after the commit), so for those the outcome is unknown: the attempt loop looks the
    task up before it sends anything again.
    """
    if code in FATAL_CODES or code.startswith("InvalidAccessKeyId"):
        return ErrorKind.FATAL
    if code.startswith("Throttling") or status == 429 or code in REFUSED_CODES:
        return ErrorKind.RETRYABLE
    if code in PERMANENT_CODES:
        return ErrorKind.PERMANENT
    if status >= 500 or code == "ServiceUnavailable" or code.startswith("InternalError"):
        return ErrorKind.UNKNOWN_OUTCOME if mutating else ErrorKind.RETRYABLE
    return ErrorKind.PERMANENT


def malformed(
    reason: str,
    *,
    mutating: bool,
    code: str = MALFORMED,
    http_status: int | None = None,
    request_id: str | None = None,
) -> ApiError:
    """An answer not understood: unknown outcome for a write, retryable for a read."""
    kind = ErrorKind.UNKNOWN_OUTCOME if mutating else ErrorKind.RETRYABLE
    return ApiError(kind, code, reason, http_status=http_status, request_id=request_id)


class _Unreadable(ValueError):
    """The body is not a JSON document this client accepts."""


def _no_constant(name: str) -> Any:
    raise _Unreadable(f"JSON constant {name} is not a number the service sends")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unreadable("a number overflows a float")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def load_json(body: bytes) -> Any:
    """The JSON document in `body`; _Unreadable when it is not one (or nests without end,
    holds NaN or Infinity, or a number beyond a float's range)."""
    try:
        # json.loads(body, parse_constant=..., parse_float=...), without a decoder per call
        # '{' then a byte that is not NUL (no BOM, not UTF-16/32) is UTF-8, as detect_encoding
        # says: not worked out again for every answer
        utf8 = body[:1] == b"{" and body[1:2] != b"\0"
        encoding = "utf-8" if utf8 else json.detect_encoding(body)
        return _DECODER.decode(body.decode(encoding, "surrogatepass"))
    except _Unreadable:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _Unreadable(type(exc).__name__) from None


def is_id(value: object) -> TypeGuard[int]:
    """A migration or project id as the service defines them: an int64 integer, at least 1."""
    return type(value) is int and 1 <= value <= MAX_ID


def request_id_of(value: object) -> str | None:
    """A request id worth recording, or None: a short token of letters, digits and dashes."""
    if isinstance(value, str) and REQUEST_ID.fullmatch(value):
        return value
    return None


def code_of(value: object) -> str | None:
    """An error code of the expected shape (numbers, as one sample has them, count), or None."""
    if type(value) is int:
        value = str(value)
    if isinstance(value, str) and CODE.fullmatch(value):
        return value
    return None


def text_of(value: object) -> str:
    """A message or name as text, bounded; what is neither text nor a number is dropped."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if type(value) in (int, float):
        return str(value)[:MAX_TEXT]
    return ""


def url_of(value: object) -> str | None:
    """A DownloadUrl: None when absent or empty; ValueError when it is not a bounded ASCII URL."""
    if value is None or value == "":
        return None
    if (
        not isinstance(value, str)
        or len(value) > MAX_URL
        or not value.isascii()
        or not value.isprintable()
        or not value.startswith(("https://", "http://"))
    ):
        raise ValueError("DownloadUrl is not a URL")
    return value


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """x-acs-retry-after (milliseconds) in seconds, clamped to MAX_RETRY_AFTER; None when absent,
    zero, or not a plain number of at most MAX_RETRY_AFTER_DIGITS digits (garbage is ignored:
    it must neither crash the run nor pause it for ever)."""
    raw = headers.get("x-acs-retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_RETRY_AFTER_DIGITS:
        return None
    millis = int(raw)
    return min(millis / 1000.0, MAX_RETRY_AFTER) if millis > 0 else None


def parse_answer(response: HttpResponse, *, mutating: bool) -> dict[str, Any]:
    """The JSON object of a success answer; every other answer raised as a classified ApiError."""
    status = response.status
    header_rid = request_id_of(response.headers.get("x-acs-request-id"))
    try:
        body = load_json(response.body) if response.body else None
    except _Unreadable:
        body = None
    if not isinstance(body, dict):
        if status == 429:  # throttled, whatever the body: refused before anything was done
            raise ApiError(
                ErrorKind.RETRYABLE,
                "HTTP429",
                "HTTP 429 with a body that is not JSON",
                http_status=status,
                request_id=header_rid,
                retry_after=retry_after_of(response.headers),
            )
        code = f"HTTP{status}" if status >= 300 else MALFORMED
        raise malformed(
            f"HTTP {status} with a body that is not a JSON object",
            mutating=mutating,
            code=code,
            http_status=status,
            request_id=header_rid,
        )
    request_id = request_id_of(body.get("RequestId") or body.get("requestId")) or header_rid
    if status >= 300:
        code = code_of(body.get("Code") or body.get("code")) or f"HTTP{status}"
        message = text_of(body.get("Message") or body.get("message"))
        error = ApiError(
            classify(status, code, mutating=mutating),
            code,
            message,
            http_status=status,
            request_id=request_id,
            retry_after=retry_after_of(response.headers),
        )
        if error.is_duplicate_name:
            error = ApiError(
                ErrorKind.PERMANENT,
                DUPLICATE_NAME_CODE,
                message,
                http_status=status,
                request_id=request_id,
            )
        raise error
    if body.get("Success") is False:
        code = code_of(body.get("ErrorCode") or body.get("Code")) or "Unsuccessful"
        message = text_of(body.get("ErrorMessage") or body.get("Message")) or "Success is false"
        raise ApiError(
            classify(status, code, mutating=mutating),
            code,
            message,
            http_status=status,
            request_id=request_id,
        )
    return body


def page_of(body: Mapping[str, Any]) -> MigrationPage:
    """A ListMigrations page, every item checked. A page that cannot be trusted whole (an item
    without a proper id or name, a missing or negative TotalCount, Migrations not a list) is
    malformed: read again, never taken as "the task is not there"."""
    try:
        return _page(body)
    except (KeyError, TypeError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
        raise malformed(
            f"ListMigrations answer not understood ({reason})",
            mutating=False,
            request_id=request_id_of(body.get("RequestId")),
        ) from None


def _count(data: Mapping[str, Any], name: str, *, default: int | None = None) -> int:
    value = data.get(name, default)
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise ValueError(f"{name} is missing or not a count")
    return value


def _migration(item: object) -> Migration:
    if not isinstance(item, dict):
        raise ValueError("a migration is not an object")
    migration_id, name = item.get("Id"), item.get("Name")
    if not is_id(migration_id) or not isinstance(name, str):
        raise ValueError("a migration has no valid Id or Name")
    status = item.get("Status", "")
    if not isinstance(status, str) or (status and not STATUS.fullmatch(status)):
        raise ValueError("a migration has an invalid Status")
    project_id = item.get("ProjectId", 0)
    if project_id != 0 and not is_id(project_id):
        raise ValueError("a migration has an invalid ProjectId")
    return Migration(
        migration_id=migration_id,
        name=name,
        project_id=project_id,
        migration_type=text_of(item.get("MigrationType")),
        status=status,
        download_url=url_of(item.get("DownloadUrl")),
        message=text_of(item.get("Message")) or None,
        description=text_of(item["Description"]) if item.get("Description") is not None else None,
    )


def _page(body: Mapping[str, Any]) -> MigrationPage:
    data = body.get("Data")
    if not isinstance(data, dict):
        raise ValueError("no Data object")
    items = data.get("Migrations", [])
    if not isinstance(items, list):
        raise ValueError("Migrations is not a list")
    migrations = tuple(_migration(item) for item in items)
    total = _count(data, "TotalCount")
    if total < len(migrations):
        raise ValueError("TotalCount is less than the migrations on the page")
    return MigrationPage(
        migrations=migrations,
        page_number=_count(data, "PageNumber", default=1),
        page_size=_count(data, "PageSize", default=len(migrations)),
        total_count=total,
        request_id=request_id_of(body.get("RequestId")),
    )
