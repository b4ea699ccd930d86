"""What must never be shown, and how it is masked: credentials in any encoding, and the signing
parameters of presigned URLs. Pure text functions, shared by the logs, the client and reports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from runner.text import printable

REDACTED = "[redacted]"
# Query parameters of presigned URLs (OSS DownloadUrls) and of V1-signed API URLs that sign or
# identify: masked anywhere.
URL_SECRET = re.compile(
    r"(?i)\b(Signature|OSSAccessKeyId|AccessKeyId|x-oss-signature|x-oss-credential"
    r"|security-token|x-oss-security-token|SecurityToken)=[^&\s\"'<>]*"
)


PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def secret_forms(secret: str) -> set[str]:
    """A secret as it may appear: as is; percent-encoded once (strictly, as the signer does; form
    style with '+' for a space, as the V1 query on the wire; or with '/' left as is, as urllib's and
    yarl's defaults do) or twice (V1 strings to sign, echoed by the gateway, hold it encoded
    twice), each with upper- or lowercase hex digits (RFC 3986 makes them equal, so an echo may
    use either); and JSON-escaped, with or without '\\/' for '/'."""
    once = {quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
    once |= {PERCENT_ESCAPE.sub(lambda m: m[0].lower(), form) for form in once}
    twice = {quote(form, safe="") for form in once}
    escaped = json.dumps(secret)[1:-1]
    return {secret, escaped, escaped.replace("/", "\\/"), *once, *twice}


def mask(text: str, forms: Iterable[str]) -> str:
    """`text` with every one of `forms` replaced by the redaction mark, in one pass and longest
    first (a form may hold a shorter one: a secret ending in a backslash is the start of its
    JSON-escaped form), so that no mark already put is masked again."""
    found = sorted({form for form in forms if form and form in text}, key=len, reverse=True)
    if not found:
        return text
    if len(found) == 1:
        return text.replace(found[0], REDACTED)
    return re.sub("|".join(map(re.escape, found)), REDACTED, text)


def scrub_url_secrets(text: str) -> str:
    """The text with the values of signing query parameters masked: a presigned URL stays
    readable (host, path, Expires) but can no longer be used."""
    return URL_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


STRING_TO_SIGN = re.compile(r"(server )?string to sign", re.IGNORECASE)
MAX_MESSAGE = 500


def clean_message(message: str, secrets: Iterable[str] = ()) -> str:
    """A server message safe to log and journal: no echoed string-to-sign (with V1 it carries
    the security token), no credential in any encoding, no URL signature or key id, nothing a
    terminal would act on and nothing SQLite could refuse (printable), bounded length."""
    message = printable(message)
    found = STRING_TO_SIGN.search(message)
    if found:
        message = message[: found.start()].rstrip(" :,") + " (string to sign omitted)"
    message = mask(message, (form for s in secrets if s for form in secret_forms(s)))
    message = scrub_url_secrets(message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    return message
