"""structlog configuration: logs go to stderr (JSON when stderr is not a terminal), redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from runner.redact import REDACTED, mask, scrub_url_secrets, secret_forms
from runner.text import printable

SECRET_KEY = re.compile(r"secret|token|signature|authorization|password", re.IGNORECASE)


class Redactor:
    """A processor that masks secret-looking fields and any known secret value anywhere."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Mask these values in every form `secret_forms` lists (encoded once or twice, …)."""
        for secret in secrets:
            if secret:
                forms = secret_forms(secret)
                self._secrets.extend(f for f in forms if f not in self._secrets)

    def redact(self, text: str) -> str:
        """`text` with every known secret and every URL signature masked."""
        return scrub_url_secrets(mask(text, self._secrets))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value

    def _field(self, name: str, value: Any) -> Any:
        # a number is never a secret: a count keyed by an error code such as
        # SignatureDoesNotMatch or InvalidSecurityToken.Expired stays readable
        if SECRET_KEY.search(name) and value not in (None, "") and not _number(value):
            return REDACTED
        return self._scrub(value)

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name in list(event_dict):
            event_dict[name] = self._field(name, event_dict[name])
        return event_dict


def _number(value: Any) -> bool:
    return isinstance(value, int | float)


REDACTOR = Redactor()


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def printable_values(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A processor: every text value without escape sequences or control characters (a task
    name or a server message must not recolour or rewrite the operator's terminal)."""
    for name in list(event_dict):
        value = event_dict[name]
        if name == "exception" and isinstance(value, str):  # a traceback keeps its lines
            event_dict[name] = "\n".join(printable(line) for line in value.split("\n"))
        else:
            event_dict[name] = _printable(value)
    return event_dict


def configure(
    *, verbose: bool = False, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Configure structlog once for the process; JSON unless the stream is a terminal."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        # plain tracebacks: the rich one shows every frame's local variables, credentials included
        else structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # a traceback as plain text, never with locals
            REDACTOR,
            printable_values,
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
