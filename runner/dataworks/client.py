"""The DataWorks client: one method per operation, one attempt per call.

It builds the request, signs it with a fresh date and nonce, sends it through the transport and
turns the answer into a value or a classified `ApiError`. Pacing and retries live in the
attempt loop (`runner.attempt`), so that every attempt passes through the rate limiter.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from runner.dataworks import signing
from runner.dataworks.actions import (
    CREATE_EXPORT,
    DATAWORKS_VERSION,
    GET_SUMMARY,
    LIST,
    START,
    ApiAction,
)
from runner.dataworks.credentials import Credentials
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.transport import (
    ConnectError,
    ExchangeError,
    HttpRequest,
    HttpResponse,
    Transport,
)
from runner.models import (
    DUPLICATE_NAME_CODE,
    ApiError,
    Created,
    ErrorKind,
    ExportSpec,
    Migration,
    MigrationPage,
    Started,
    Summary,
)
from runner.redact import mask, scrub_url_secrets, secret_forms

API_VERSION = DATAWORKS_VERSION
SignatureVersion = Literal["v3", "v1"]

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


STRING_TO_SIGN = re.compile(r"(server )?string to sign", re.IGNORECASE)
MAX_MESSAGE = 500


def clean_message(message: str, secrets: Iterable[str] = ()) -> str:
    """A server message safe to log and journal: no echoed string-to-sign (with V1 it carries
    the security token), no credential in any encoding, no URL signature or key id, bounded
    length."""
    found = STRING_TO_SIGN.search(message)
    if found:
        message = message[: found.start()].rstrip(" :,") + " (string to sign omitted)"
    message = mask(message, (form for s in secrets if s for form in secret_forms(s)))
    message = scrub_url_secrets(message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    return message


def _new_nonce() -> str:
    return secrets.token_hex(16)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DataWorksClient:
    def __init__(
        self,
        transport: Transport,
        credentials: Credentials,
        endpoints: Endpoints,
        *,
        signature_version: SignatureVersion = "v3",
        timeout: float = 10.0,
        now: Callable[[], datetime] = _utcnow,
        nonce: Callable[[], str] = _new_nonce,
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._endpoints = endpoints
        self._signature_version: SignatureVersion = signature_version
        self._timeout = timeout
        self._now = now
        self._nonce = nonce
        self._places: dict[str, tuple[str, str]] = {}

    @property
    def account(self) -> str:
        """The access key id: the account a rate-limit bucket is counted against."""
        return self._credentials.access_key_id

    def limit_scope(self, region: str) -> str:
        """The rate-limit scope of a region's requests (see Endpoints.limit_scope)."""
        return self._endpoints.limit_scope(region)

    async def create_export_migration(self, spec: ExportSpec) -> Created:
        """Send CreateExportMigration once. An unknown outcome raises UNKNOWN_OUTCOME."""
        body = await self._call(spec.key.region, CREATE_EXPORT, spec.request_params())
        data = body.get("Data")
        if not isinstance(data, int) or isinstance(data, bool):
            raise ApiError(
                ErrorKind.UNKNOWN_OUTCOME,
                "MalformedResponse",
                "create answered without a migration id",
                request_id=_request_id(body),
            )
        return Created(migration_id=data, request_id=_request_id(body))

    async def list_migrations(
        self,
        region: str,
        project_id: int,
        *,
        page_number: int = 1,
        page_size: int = 100,
        migration_type: str = "EXPORT",
    ) -> MigrationPage:
        params = {
            "ProjectId": str(project_id),
            "MigrationType": migration_type,
            "PageNumber": str(page_number),
            "PageSize": str(page_size),
        }
        body = await self._call(region, LIST, params)
        return _parse_page(body)

    async def start_migration(self, region: str, project_id: int, migration_id: int) -> Started:
        """Send StartMigration once. `Data: false` (already running or finished, or refused) is
        an answer, not an error; a lost or 5xx answer raises UNKNOWN_OUTCOME: the next summary
        read tells whether the task started."""
        params = {"ProjectId": str(project_id), "MigrationId": str(migration_id)}
        body = await self._call(region, START, params)
        data = body.get("Data")
        if not isinstance(data, bool):
            raise ApiError(
                ErrorKind.UNKNOWN_OUTCOME,
                "MalformedResponse",
                "StartMigration answered without a boolean Data",
                request_id=_request_id(body),
            )
        code = body.get("ErrorCode") or None
        message = body.get("ErrorMessage") or None
        return Started(
            started=data,
            request_id=_request_id(body),
            error_code=None if data or code is None else str(code),
            error_message=None if data or message is None else clean_message(str(message)),
        )

    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary:
        """Read a task's status and, once exported, its (time-limited) DownloadUrl."""
        params = {"ProjectId": str(project_id), "MigrationId": str(migration_id)}
        body = await self._call(region, GET_SUMMARY, params)
        data = body.get("Data")
        if not isinstance(data, dict) or not isinstance(data.get("Status"), str):
            raise ApiError(
                ErrorKind.RETRYABLE,
                "MalformedResponse",
                "GetMigrationSummary answered without Data.Status",
                request_id=_request_id(body),
            )
        url = data.get("DownloadUrl")
        return Summary(
            status=data["Status"],
            download_url=url if isinstance(url, str) and url else None,
            name=str(data.get("Name") or ""),
            request_id=_request_id(body),
        )

    async def _call(
        self, region: str, action: ApiAction, params: Mapping[str, str]
    ) -> dict[str, Any]:
        mutating = action.mutating
        request = self._build(region, action, params)
        try:
            response = await self._transport.send(request, self._timeout)
            return _parse(response, mutating=mutating)
        except ConnectError as exc:
            raise self._error(ErrorKind.RETRYABLE, "ConnectError", str(exc)) from exc
        except ExchangeError as exc:
            kind = ErrorKind.UNKNOWN_OUTCOME if mutating else ErrorKind.RETRYABLE
            raise self._error(kind, "ExchangeError", str(exc)) from exc
        except ApiError as exc:
            exc.message = clean_message(exc.message, self._secrets())
            exc.args = (f"{exc.code}: {exc.message}",)
            raise

    def _secrets(self) -> tuple[str, ...]:
        creds = self._credentials
        return (creds.access_key_secret, creds.security_token or "")

    def _error(self, kind: ErrorKind, code: str, message: str) -> ApiError:
        return ApiError(kind, code, clean_message(message, self._secrets()))

    def _place(self, region: str) -> tuple[str, str]:
        """A region's base URL and host, worked out once."""
        place = self._places.get(region)
        if place is None:
            base = self._endpoints.base_url(region)
            place = self._places[region] = (base, urlsplit(base).netloc)
        return place

    def _build(self, region: str, action: ApiAction, params: Mapping[str, str]) -> HttpRequest:
        base, host = self._place(region)
        signed = signing.build_request(
            signature_version=self._signature_version,
            method="POST",
            host=host,
            action=action.name,
            api_version=action.version,
            body_params=params,
            credentials=self._credentials,
            timestamp=signing.timestamp_of(self._now()),
            nonce=self._nonce(),
        )
        return HttpRequest(
            method=signed.method,
            url=base + signed.path_and_query,
            headers=signed.headers,
            body=signed.body,
        )


def _request_id(body: Mapping[str, Any]) -> str | None:
    rid = body.get("RequestId") or body.get("requestId")
    return str(rid) if rid else None


def _parse(response: HttpResponse, *, mutating: bool) -> dict[str, Any]:
    header_rid = response.headers.get("x-acs-request-id")
    try:
        body = json.loads(response.body) if response.body else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.status >= 400:
            kind = classify(response.status, "", mutating=mutating)
            raise ApiError(
                kind,
                f"HTTP{response.status}",
                f"HTTP {response.status} with a body that is not JSON",
                http_status=response.status,
                request_id=header_rid,
            )
        raise ApiError(
            ErrorKind.UNKNOWN_OUTCOME if mutating else ErrorKind.RETRYABLE,
            "MalformedResponse",
            f"HTTP {response.status} with a body that is not a JSON object",
            http_status=response.status,
            request_id=header_rid,
        )
    request_id = _request_id(body) or header_rid
    if response.status >= 300:
        code = str(body.get("Code") or body.get("code") or f"HTTP{response.status}")
        message = str(body.get("Message") or body.get("message") or "")
        retry_after = _retry_after(response.headers)
        error = ApiError(
            classify(response.status, code, mutating=mutating),
            code,
            message,
            http_status=response.status,
            request_id=request_id,
            retry_after=retry_after,
        )
        if error.is_duplicate_name:
            error = ApiError(
                ErrorKind.PERMANENT,
                DUPLICATE_NAME_CODE,
                message,
                http_status=response.status,
                request_id=request_id,
            )
        raise error
    if body.get("Success") is False:
        code = str(body.get("ErrorCode") or body.get("Code") or "Unsuccessful")
        message = str(body.get("ErrorMessage") or body.get("Message") or "Success is false")
        raise ApiError(
            classify(response.status, code, mutating=mutating),
            code,
            message,
            http_status=response.status,
            request_id=request_id,
        )
    return body


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("x-acs-retry-after")
    if raw is None:
        return None
    try:
        millis = int(raw)
    except ValueError:
        return None
    return millis / 1000.0 if millis > 0 else None


def _parse_page(body: Mapping[str, Any]) -> MigrationPage:
    try:
        return _page(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(
            ErrorKind.RETRYABLE,
            "MalformedResponse",
            f"ListMigrations answer not understood ({type(exc).__name__})",
            request_id=_request_id(body),
        ) from exc


def _page(body: Mapping[str, Any]) -> MigrationPage:
    data = body.get("Data")
    if not isinstance(data, dict):
        raise ApiError(ErrorKind.RETRYABLE, "MalformedResponse", "ListMigrations without Data")
    items = data.get("Migrations") or []
    migrations = tuple(
        Migration(
            migration_id=int(item["Id"]),
            name=str(item.get("Name", "")),
            project_id=int(item.get("ProjectId", 0)),
            migration_type=str(item.get("MigrationType", "")),
            status=str(item.get("Status", "")),
            download_url=item.get("DownloadUrl") or None,
            message=str(item.get("Message") or "") or None,
        )
        for item in items
        if isinstance(item, dict) and "Id" in item
    )
    return MigrationPage(
        migrations=migrations,
        page_number=int(data.get("PageNumber", 1)),
        page_size=int(data.get("PageSize", len(migrations))),
        total_count=int(data.get("TotalCount", len(migrations))),
        request_id=_request_id(body),
    )
