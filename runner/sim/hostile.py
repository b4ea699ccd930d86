"""Hostile answers: what a broken gateway or proxy in front of the service might send.

`runner sim --hostile-rate P` answers a share P of the API requests with one of these, drawn
from those that fit the action (a bad TotalCount only makes sense for ListMigrations). For a
write, the operation is applied first in about half of the cases, so a client that trusts a
malformed answer, or retries it without looking the task up, creates a task twice. Every kind is
one a client must classify (issue 6, item 3): none is a documented refusal, so a correct client
treats each as "the outcome is unknown" for a write and "read again" for a read.
"""

from __future__ import annotations

import enum
import gzip
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.dataworks.actions import CREATE_EXPORT, CREATE_IMPORT, LIST, ApiAction

MAX_CLIENT_ANSWER = 8 * 1024 * 1024  # the runner's cap: a too-large answer passes it
_PLACEHOLDER = "hostile-value-placeholder"


class Hostile(enum.StrEnum):
    DEEP_NESTING = "deep_nesting"
    FLOAT_OVERFLOW = "float_overflow"
    ID_OUT_OF_RANGE = "id_out_of_range"
    ID_AS_STRING = "id_as_string"
    NEGATIVE_ID = "negative_id"
    TRUNCATED = "truncated"
    EMPTY = "empty"
    ARRAY = "array"
    HTML_PAGE = "html_page"
    TOTAL_MISSING = "total_missing"
    TOTAL_NEGATIVE = "total_negative"
    MIGRATIONS_NOT_LIST = "migrations_not_list"
    RETRY_AFTER_DIGITS = "retry_after_digits"
    TOO_LARGE = "too_large"
    GZIP_BOMB = "gzip_bomb"


ID_KINDS = (Hostile.ID_OUT_OF_RANGE, Hostile.ID_AS_STRING, Hostile.NEGATIVE_ID)
LIST_KINDS = (Hostile.TOTAL_MISSING, Hostile.TOTAL_NEGATIVE, Hostile.MIGRATIONS_NOT_LIST)
GENERIC_KINDS = tuple(k for k in Hostile if k not in ID_KINDS and k not in LIST_KINDS)
CREATES = (CREATE_EXPORT.name, CREATE_IMPORT.name)


def kinds_for(action: ApiAction) -> tuple[Hostile, ...]:
    """The hostile kinds that fit an action's answer."""
    if action.name == LIST.name:
        return GENERIC_KINDS + ID_KINDS + LIST_KINDS
    if action.name in CREATES:
        return GENERIC_KINDS + ID_KINDS
    return GENERIC_KINDS


@dataclass(frozen=True, slots=True)
class HostileDraw:
    kind: Hostile
    apply: bool  # run the operation first (always for reads: they change nothing)


def draw_hostile(rate: float, rng: random.Random, action: ApiAction) -> HostileDraw | None:
    """One draw per API request: None (answer normally) or the hostile answer to send."""
    if rate <= 0 or rng.random() >= rate:
        return None
    kind = rng.choice(kinds_for(action))
    apply = not action.mutating or rng.random() < 0.5
    return HostileDraw(kind, apply)


@dataclass(frozen=True, slots=True)
class HostileAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


_BOMB: bytes | None = None


def gzip_bomb() -> bytes:
    """About 1 MiB on the wire that inflates to 1 GiB: 1,024 gzip members of 1 MiB of zeros."""
    global _BOMB
    if _BOMB is None:
        _BOMB = gzip.compress(bytes(1 << 20), 9) * 1024
    return _BOMB


def _weird_id(kind: Hostile, real: object) -> object:
    number = real if type(real) is int else 100001
    if kind is Hostile.ID_OUT_OF_RANGE:
        return 2**64 + number
    if kind is Hostile.ID_AS_STRING:
        return str(number)
    return -number


def hostile_answer(
    draw: HostileDraw, action: ApiAction, body: Mapping[str, Any] | None, rid: str
) -> HostileAnswer:
    """The answer of `draw.kind`, made from the real answer's body when the operation ran (or
    from a plausible success body when it did not)."""
    kind = draw.kind
    data: Any = dict(body) if body is not None else {"RequestId": rid, "Success": True, "Data": 1}
    if kind is Hostile.HTML_PAGE:
        status = random.Random(rid).choice((400, 403, 502))
        page = f"<html><head><title>{status}</title></head><body>gateway error</body></html>"
        return HostileAnswer(status, page.encode(), content_type="text/html")
    if kind is Hostile.RETRY_AFTER_DIGITS:
        error = {"RequestId": rid, "Code": "ServiceUnavailable", "Message": "try later"}
        return HostileAnswer(503, _dumps(error), {"x-acs-retry-after": "9" * 60})
    if kind is Hostile.GZIP_BOMB:
        return HostileAnswer(200, gzip_bomb(), {"Content-Encoding": "gzip"})
    if kind is Hostile.EMPTY:
        return HostileAnswer(200, b"")
    if kind is Hostile.DEEP_NESTING:
        return HostileAnswer(200, b'{"RequestId":"' + rid.encode() + b'","Data":' + b"[" * 100_000)
    if kind is Hostile.TRUNCATED:
        text = _dumps(data)
        return HostileAnswer(200, text[: len(text) // 2])
    if kind is Hostile.ARRAY:
        return HostileAnswer(200, b"[" + _dumps(data) + b"]")
    if kind is Hostile.TOO_LARGE:
        padded = {**data, "Padding": "x" * (MAX_CLIENT_ANSWER + 1024)}
        return HostileAnswer(200, _dumps(padded))
    if kind is Hostile.FLOAT_OVERFLOW:
        text = _dumps({**data, "Data": _PLACEHOLDER})
        return HostileAnswer(200, text.replace(f'"{_PLACEHOLDER}"'.encode(), b"1e999"))
    return HostileAnswer(200, _dumps(_mangled(kind, action, data)))


def _mangled(kind: Hostile, action: ApiAction, data: dict[str, Any]) -> dict[str, Any]:
    """A well-formed JSON body whose values are wrong: ids, TotalCount, Migrations."""
    inner = data.get("Data")
    if action.name == LIST.name and isinstance(inner, dict):
        page = dict(inner)
        items = [dict(item) for item in page.get("Migrations", [])] or [
            {"Id": 100001, "Name": "hostile", "Status": "INIT"}
        ]
        if kind in ID_KINDS:
            items[0]["Id"] = _weird_id(kind, items[0].get("Id"))
        elif kind is Hostile.TOTAL_MISSING:
            page.pop("TotalCount", None)
        elif kind is Hostile.TOTAL_NEGATIVE:
            page["TotalCount"] = -1
        elif kind is Hostile.MIGRATIONS_NOT_LIST:
            page["Migrations"] = {str(item.get("Id")): item for item in items}
            return {**data, "Data": page}
        page["Migrations"] = items
        return {**data, "Data": page}
    return {**data, "Data": _weird_id(kind, inner)}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
