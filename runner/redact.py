"""What must never be shown, and how it is masked: credentials in any encoding, and the signing
parameters of presigned URLs. Pure text functions, shared by the logs, the client and reports."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[redacted]"
# Query parameters of presigned URLs (OSS DownloadUrls) that sign or identify: masked anywhere.
URL_SECRET = re.compile(
    r"(?i)\b(Signature|OSSAccessKeyId|x-oss-signature|x-oss-credential|security-token"
    r"|x-oss-security-token|SecurityToken)=[^&\s\"'<>]*"
)


def secret_forms(secret: str) -> set[str]:
    """A secret as it may appear: as is, and percent-encoded once or twice (V1 strings to sign,
    echoed by the gateway, hold it encoded twice)."""
    once = quote(secret, safe="")
    return {secret, once, quote(once, safe="")}


def mask(text: str, forms: Iterable[str]) -> str:
    """`text` with every one of `forms` replaced by the redaction mark."""
    for form in forms:
        if form and form in text:
            text = text.replace(form, REDACTED)
    return text


def scrub_url_secrets(text: str) -> str:
    """The text with the values of signing query parameters masked: a presigned URL stays
    readable (host, path, Expires) but can no longer be used."""
    return URL_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
