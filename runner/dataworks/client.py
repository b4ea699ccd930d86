"""The DataWorks client: one method per operation, one attempt per call.

It builds the request, signs it with a fresh date and nonce, sends it through the transport and
turns the answer into a value or a classified `ApiError`. Pacing and retries live in the
attempt loop (`runner.attempt`), so that every attempt passes through the rate limiter.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from runner.dataworks import signing
from runner.dataworks.actions import (
    AUTHORIZE_UPLOAD,
    CREATE_EXPORT,
    CREATE_IMPORT,
    DATAWORKS_VERSION,
    GET_SUMMARY,
    LIST,
    START,
    ApiAction,
)
from runner.dataworks.answers import (
    STATUS,
    classify,
    code_of,
    is_id,
    malformed,
    page_of,
    parse_answer,
    request_id_of,
    text_of,
    url_of,
)
from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.encoding import is_plain_form
from runner.dataworks.endpoints import Endpoints
from runner.dataworks.keys import KeyProvider, StaticKeys
from runner.dataworks.transport import (
    ConnectError,
    ExchangeError,
    ExchangeTimeout,
    HttpRequest,
    ResponseTooLarge,
    Transport,
)
from runner.dataworks.upload import UploadGrant
from runner.models import (
    ApiError,
    Created,
    ErrorKind,
    ExportSpec,
    MigrationPage,
    Started,
    Summary,
)
from runner.redact import clean_message
from runner.text import printable

__all__ = ["API_VERSION", "DataWorksClient", "SignatureVersion", "classify"]

API_VERSION = DATAWORKS_VERSION
SignatureVersion = Literal["v3", "v1"]

EXPIRED_TOKEN = "InvalidSecurityToken.Expired"
UPLOAD_PRODUCT = "dataworks-public"  # AuthorizeFileUpload's Product for DataWorks packages
MAX_GRANT_FIELD = 4096
_GRANT_FIELDS = ("Bucket", "Endpoint", "ObjectKey", "AccessKeyId", "EncodedPolicy", "Signature")
# {Bucket}.{Endpoint}: a host name (or address) and an optional port, nothing else
_OSS_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?")
_NONCES_PER_READ = 256
_nonces: list[str] = []  # read ahead, not yet used; a forked child starts with none


def _new_nonce() -> str:
    """A fresh signature nonce: 16 random bytes in hex, as secrets.token_hex(16) makes. The
    system's randomness is read for 256 of them at once (one call, not one a request)."""
    if not _nonces:
        raw = os.urandom(16 * _NONCES_PER_READ).hex()
        _nonces.extend([raw[i : i + 32] for i in range(0, len(raw), 32)])
    return _nonces.pop()


# a child must never send its parent's nonces again (a replay the service refuses)
os.register_at_fork(after_in_child=_nonces.clear)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DataWorksClient:
    def __init__(
        self,
        transport: Transport,
        credentials: Credentials | KeyProvider,
        endpoints: Endpoints,
        *,
        signature_version: SignatureVersion = "v3",
        timeout: float = 10.0,
        now: Callable[[], datetime] = _utcnow,
        nonce: Callable[[], str] = _new_nonce,
    ) -> None:
        self._transport = transport
        self._keys = (
            StaticKeys(credentials) if isinstance(credentials, Credentials) else credentials
        )
        # The account a rate-limit bucket is counted against: the key provider's stable label
        # (a long-term key's id, a role's ARN), the same while temporary keys rotate. Read once:
        # every request looks it up.
        self.account: str = self._keys.account
        self._endpoints = endpoints
        self._signature_version: SignatureVersion = signature_version
        self._timeout = timeout
        self._now = now
        self._nonce = nonce
        self._places: dict[str, tuple[str, str]] = {}
        self._stamp: tuple[int, str] = (-1, "")

    def limit_scope(self, region: str) -> str:
        """The rate-limit scope of a region's requests (see Endpoints.limit_scope)."""
        return self._endpoints.limit_scope(region)

    async def create_export_migration(
        self,
        spec: ExportSpec,
        *,
        after: Awaitable[None] | None = None,
        fingerprint: str | None = None,
    ) -> Created:
        """Send CreateExportMigration once. An unknown outcome raises UNKNOWN_OUTCOME. With
        `after` (the commit of the create's intent), the request is built and signed first,
        and leaves only once `after` is done (whatever else happens, it is awaited).
        `fingerprint` is the spec's, when the caller has made it: the parameters as
        `name=value` in name order, so the body itself when none needs escaping."""
        params = spec.request_params()
        form = None
        if fingerprint is not None and is_plain_form(fingerprint, len(params)):
            form = fingerprint
        body = await self._call(spec.key.region, CREATE_EXPORT, params, after=after, form=form)
        data, rid = body.get("Data"), _request_id(body)
        if not is_id(data):
            raise malformed(
                "create answered without a valid migration id", mutating=True, request_id=rid
            )
        return Created(migration_id=data, request_id=rid)

    async def create_import_migration(
        self, region: str, params: Mapping[str, str], package_file: str
    ) -> Created:
        """Send CreateImportMigration once in `region`, with `params` (an `ImportSpec.params()`)
        and the package uploaded as `package_file`. An unknown outcome raises UNKNOWN_OUTCOME."""
        body = await self._call(region, CREATE_IMPORT, {**params, "PackageFile": package_file})
        data, rid = body.get("Data"), _request_id(body)
        if not is_id(data):
            raise malformed(
                "CreateImportMigration answered without a valid migration id",
                mutating=True,
                request_id=rid,
            )
        return Created(migration_id=data, request_id=rid)

    async def authorize_file_upload(self, region: str) -> UploadGrant:
        """OpenPlatform's AuthorizeFileUpload for a package to import in `region`: where to post
        it and the signed policy to post it with."""
        params = {"Product": UPLOAD_PRODUCT, "RegionId": region}
        body = await self._call(region, AUTHORIZE_UPLOAD, params)
        rid = _request_id(body)
        fields = {name: body.get(name) for name in _GRANT_FIELDS}
        texts = {
            name: value
            for name, value in fields.items()
            if isinstance(value, str)
            and value
            and len(value) <= MAX_GRANT_FIELD
            and printable(value) == value
            and " " not in value
        }
        if len(texts) != len(_GRANT_FIELDS) or not _OSS_HOST.fullmatch(
            f"{texts['Bucket']}.{texts['Endpoint']}"
        ):
            raise malformed(
                "AuthorizeFileUpload answered without a usable grant",
                mutating=False,
                request_id=rid,
            )
        return UploadGrant(
            bucket=texts["Bucket"],
            endpoint=texts["Endpoint"],
            object_key=texts["ObjectKey"],
            access_key_id=texts["AccessKeyId"],
            encoded_policy=texts["EncodedPolicy"],
            signature=texts["Signature"],
            use_accelerate=body.get("UseAccelerate") is True,
            request_id=rid,
        )

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
        return page_of(body)

    async def start_migration(self, region: str, project_id: int, migration_id: int) -> Started:
        """Send StartMigration once. `Data: false` (already running or finished, or refused) is
        an answer, not an error; a lost or 5xx answer raises UNKNOWN_OUTCOME: the next summary
        read tells whether the task started."""
        params = {"ProjectId": str(project_id), "MigrationId": str(migration_id)}
        body = await self._call(region, START, params)
        data = body.get("Data")
        if not isinstance(data, bool):
            raise malformed("StartMigration answered without a boolean Data", mutating=True)
        code = code_of(body.get("ErrorCode"))
        message = text_of(body.get("ErrorMessage"))
        return Started(
            started=data,
            request_id=_request_id(body),
            error_code=None if data else code,
            error_message=None if data or not message else clean_message(message),
        )

    async def get_migration_summary(
        self, region: str, project_id: int, migration_id: int
    ) -> Summary:
        """Read a task's status and, once exported, its (time-limited) DownloadUrl."""
        params = {"ProjectId": str(project_id), "MigrationId": str(migration_id)}
        body = await self._call(region, GET_SUMMARY, params)
        data, rid = body.get("Data"), _request_id(body)
        status = data.get("Status") if isinstance(data, dict) else None
        if not (isinstance(data, dict) and isinstance(status, str) and STATUS.fullmatch(status)):
            raise malformed(
                "GetMigrationSummary answered without Data.Status", mutating=False, request_id=rid
            )
        try:
            url = url_of(data.get("DownloadUrl"))
        except ValueError:
            raise malformed(
                "GetMigrationSummary answered a malformed DownloadUrl",
                mutating=False,
                request_id=rid,
            ) from None
        return Summary(
            status=status,
            download_url=url,
            name=text_of(data.get("Name")),
            request_id=rid,
        )

    async def _call(
        self,
        region: str,
        action: ApiAction,
        params: Mapping[str, str],
        *,
        after: Awaitable[None] | None = None,
        form: str | None = None,
    ) -> dict[str, Any]:
        mutating = action.mutating
        try:
            # a key in hand needs no await (the common case: one coroutine less per request)
            creds = self._keys.ready() or await self._keys.current()
            request = self._build(region, action, params, creds, form)
        except CredentialsError as exc:  # nothing was sent; no key can be had for this account
            refusal = ApiError(ErrorKind.FATAL, "CredentialsUnavailable", str(exc))
            await _seen_through(after)
            raise refusal from None
        except signing.SigningError as exc:  # nothing was sent: this request can never be
            refusal = ApiError(ErrorKind.PERMANENT, "InvalidRequest", str(exc))
            await _seen_through(after)
            raise refusal from exc
        if after is not None:
            await after  # the request leaves only now
        try:
            response = await self._transport.send(request, self._timeout)
            return parse_answer(response, mutating=mutating)
        except ConnectError as exc:
            raise _error(ErrorKind.RETRYABLE, "ConnectError", str(exc), creds) from exc
        except ResponseTooLarge as exc:
            kind = ErrorKind.UNKNOWN_OUTCOME if mutating else ErrorKind.RETRYABLE
            raise _error(kind, "ResponseTooLarge", str(exc), creds) from exc
        except ExchangeError as exc:
            kind = ErrorKind.UNKNOWN_OUTCOME if mutating else ErrorKind.RETRYABLE
            # a timeout apart from a reset: the run's errors by code tell them apart
            code = "Timeout" if isinstance(exc, ExchangeTimeout) else "ExchangeError"
            raise _error(kind, code, str(exc), creds) from exc
        except ApiError as exc:
            exc.message = clean_message(exc.message, _secrets(creds))
            exc.args = (f"{exc.code}: {exc.message}",)
            if exc.code == EXPIRED_TOKEN:
                # refused before anything was done: with a fresh key it is worth sending again
                renewable = self._keys.invalidate(creds.access_key_id)
                exc.kind = ErrorKind.RETRYABLE if renewable else ErrorKind.FATAL
            raise

    def _timestamp(self) -> str:
        """The signing timestamp of now; formatted once per second."""
        if self._now is _utcnow:  # the system clock: the second read without a datetime
            second = int(time.time())
            if second != self._stamp[0]:
                now = datetime.fromtimestamp(second, UTC)
                self._stamp = (second, signing.timestamp_of(now))
            return self._stamp[1]
        now = self._now()
        second = int(now.timestamp())
        if second != self._stamp[0]:
            self._stamp = (second, signing.timestamp_of(now))
        return self._stamp[1]

    def _place(self, region: str, action: ApiAction) -> tuple[str, str]:
        """The base URL and host a region's request goes to, worked out once: the region's
        DataWorks endpoint, or the action's product host (both replaced by --endpoint)."""
        where = action.host or region
        place = self._places.get(where)
        if place is None:
            base = self._endpoints.base_url(region, host=action.host)
            place = self._places[where] = (base, urlsplit(base).netloc)
        return place

    def _build(
        self,
        region: str,
        action: ApiAction,
        params: Mapping[str, str],
        creds: Credentials,
        form: str | None = None,
    ) -> HttpRequest:
        base, host = self._place(region, action)
        query = action.method == "GET"  # a GET carries its parameters in the query
        signed = signing.build_request(
            signature_version=self._signature_version,
            method=action.method,
            host=host,
            action=action.name,
            api_version=action.version,
            body_params={} if query else params,
            query_params=params if query else None,
            credentials=creds,
            timestamp=self._timestamp(),
            nonce=self._nonce(),
            form=None if query else form,
        )
        return HttpRequest(
            method=signed.method,
            url=base + signed.path_and_query,
            headers=signed.headers,
            body=signed.body,
        )


async def _seen_through(after: Awaitable[None] | None) -> None:
    """What the request was to wait for, awaited even when it will not leave: its error (the
    intent not committed) is the one the caller hears."""
    if after is not None:
        await after


def _secrets(creds: Credentials) -> tuple[str, ...]:
    return (creds.access_key_secret, creds.security_token or "")


def _error(kind: ErrorKind, code: str, message: str, creds: Credentials) -> ApiError:
    return ApiError(kind, code, clean_message(message, _secrets(creds)))


def _request_id(body: Mapping[str, Any]) -> str | None:
    return request_id_of(body.get("RequestId") or body.get("requestId"))
