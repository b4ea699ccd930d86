"""The simulator's request parameters: parsing them and the errors their problems answer.

Every parser takes the raw parameters (strings, as they arrived) and returns the value or raises
`SimError` with the HTTP status, code and message the gateway would answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

INT64_MAX = 2**63 - 1


class SimError(Exception):
    """An error answer: HTTP status, gateway code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def missing(name: str) -> SimError:
    return SimError(400, "MissingParameter", f"{name} is mandatory for this action.")


def invalid(name: str, reason: str) -> SimError:
    message = f"The specified parameter {name} is not valid: {reason}"
    return SimError(400, "InvalidParameter", message)


def project_not_found() -> SimError:
    return SimError(400, "Invalid.Tenant.ProjectNotExists", "The project does not exist.")


def _raw(params: Mapping[str, str], name: str, required: bool) -> str | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        if required:
            raise missing(name)
        return None
    return raw


def parse_int(
    params: Mapping[str, str],
    name: str,
    *,
    low: int,
    high: int = INT64_MAX,
    default: int | None = None,
) -> int:
    """An integer parameter within [low, high]; required unless a default is given."""
    raw = _raw(params, name, required=default is None)
    if raw is None:
        return default or 0
    try:
        value = int(raw.strip())
    except ValueError:
        raise invalid(name, f"'{raw}' is not an integer.") from None
    if not low <= value <= high:
        raise invalid(name, f"{value} is out of range [{low}, {high}].")
    return value


def parse_enum(
    params: Mapping[str, str], name: str, allowed: tuple[str, ...], *, required: bool = True
) -> str | None:
    raw = _raw(params, name, required)
    if raw is not None and raw not in allowed:
        raise invalid(name, f"'{raw}' is not one of {', '.join(allowed)}.")
    return raw


def parse_text(params: Mapping[str, str], name: str) -> str:
    return _raw(params, name, required=True) or ""


def check_json_object(params: Mapping[str, str], name: str) -> None:
    """An optional parameter that, when given, must be the text of a JSON object."""
    raw = _raw(params, name, required=False)
    if raw is None:
        return
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid(name, "it is not valid JSON.") from None
    if not isinstance(value, dict):
        raise invalid(name, "it is not a JSON object.")
