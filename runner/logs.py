"""structlog configuration: logs go to stderr (JSON when stderr is not a terminal), redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import quote

import structlog

REDACTED = "[redacted]"
SECRET_KEY = re.compile(r"secret|token|signature|authorization|password", re.IGNORECASE)
# Query parameters of presigned URLs (OSS DownloadUrls) that sign or identify: masked anywhere.
URL_SECRET = re.compile(
    r"(?i)\b(Signature|OSSAccessKeyId|x-oss-signature|x-oss-credential|security-token"
    r"|x-oss-security-token|SecurityToken)=[^&\s\"'<>]*"
)


def scrub_url_secrets(text: str) -> str:
    """The text with the values of signing query parameters masked: a presigned URL stays
    readable (host, path, Expires) but can no longer be used."""
    return URL_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


class Redactor:
    """A processor that masks secret-looking fields and any known secret value anywhere."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = [s for s in secrets if s]

    def add(self, *secrets: str | None) -> None:
        """Mask these values, also percent-encoded once or twice (as V1 strings to sign hold)."""
        for secret in secrets:
            if secret:
                once = quote(secret, safe="")
                forms = {secret, once, quote(once, safe="")}
                self._secrets.extend(f for f in forms if f not in self._secrets)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return scrub_url_secrets(value)
        if isinstance(value, dict):
            return {k: self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value

    def _field(self, name: str, value: Any) -> Any:
        if SECRET_KEY.search(name) and value not in (None, ""):
            return REDACTED
        return self._scrub(value)

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name in list(event_dict):
            event_dict[name] = self._field(name, event_dict[name])
        return event_dict


REDACTOR = Redactor()


def configure(
    *, verbose: bool = False, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Configure structlog once for the process; JSON unless the stream is a terminal."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
