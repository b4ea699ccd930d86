"""Uploading an import package: the grant OpenPlatform's AuthorizeFileUpload answers, the
`Uploader` seam that posts a file under it to OSS, and the form the post carries.

The flow is the official SDK's `create_import_migration_advance` (credentials-and-upload.md):
AuthorizeFileUpload gives a bucket, an endpoint, an object key and a signed policy; the package
is POSTed as a `multipart/form-data` form to `{Bucket}.{Endpoint}`; CreateImportMigration names
it as `PackageFile = http://{Bucket}.{Endpoint}/{ObjectKey}`. The client signs nothing for OSS:
the policy and its signature come with the grant. They authorise uploads until the policy
expires, so a grant is never logged: only its bucket, endpoint and key are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runner.dataworks.download import TransferError

# The form's fields in the order the SDK sends them; `file` comes last (OSS ignores fields after
# the file).
FORM_FIELDS = ("key", "OSSAccessKeyId", "policy", "Signature", "success_action_status")
SUCCESS_STATUS = "201"


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """An AuthorizeFileUpload answer: where a package may be posted, and the signed policy."""

    bucket: str
    endpoint: str  # OSS host[:port], without scheme
    object_key: str
    access_key_id: str
    encoded_policy: str
    signature: str
    use_accelerate: bool = False
    request_id: str | None = None

    @property
    def host(self) -> str:
        """The Host the post carries: `{Bucket}.{Endpoint}`."""
        return f"{self.bucket}.{self.endpoint}"

    @property
    def package_file(self) -> str:
        """CreateImportMigration's PackageFile, as the SDK writes it: http, the key as it is."""
        return f"http://{self.host}/{self.object_key}"

    def form(self) -> list[tuple[str, str]]:
        """The form fields before the file, in the SDK's order."""
        values = (
            self.object_key,
            self.access_key_id,
            self.encoded_policy,
            self.signature,
            SUCCESS_STATUS,
        )
        return list(zip(FORM_FIELDS, values, strict=True))

    def __repr__(self) -> str:  # the policy and its signature authorise uploads: never shown
        return f"UploadGrant({self.host}/{self.object_key})"


class UploadError(TransferError):
    """A package could not be posted. `code` is the OSS error code when the answer named one;
    `refused`, a new grant is needed (the policy expired or its signature was not accepted)."""

    NO_ANSWER = "UploadError"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool,
    ) -> None:
        super().__init__(message, status=status, retryable=retryable)
        self.oss_code = code

    @property
    def code(self) -> str:
        return f"OSS.{self.oss_code}" if self.oss_code else super().code


class Uploader(Protocol):
    async def upload(self, grant: UploadGrant, path: Path, timeout: float) -> int:
        """Post the file at `path` under `grant`, streamed, never whole in memory; return the
        bytes sent. Raises UploadError. An upload cut short stores nothing: OSS keeps an
        object only once the whole form has arrived."""
        ...
