"""Logs: secrets never reach the output."""

from __future__ import annotations

import io
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from runner import logs


def test_secret_values_and_fields_are_redacted() -> None:
    """A known secret is masked wherever it appears, and secret-named fields are masked."""
    out = io.StringIO()
    logs.configure(stream=out, json=True)
    logs.REDACTOR.add("very-secret-value")
    logs.get_logger("t").info(
        "hello",
        note="the key is very-secret-value!",
        access_key_secret="x",
        headers={"Authorization": "ACS3 abc", "host": "h"},
    )
    record = json.loads(out.getvalue())
    assert "very-secret-value" not in out.getvalue()
    assert record["note"] == "the key is [redacted]!"
    assert record["access_key_secret"] == "[redacted]"
    assert record["headers"] == {"Authorization": "[redacted]", "host": "h"}


# A credential with every character that encoders treat differently: '/', '+' and '='.
SECRET = "ab/cd+ef=gh=="
SPACED = "ab cd/ef"  # a space: form encoding writes it as '+'


def lowercase_hex(encoded: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded)


def encodings(secret: str) -> dict[str, str]:
    """The ways a credential travels: on the wire, in V1 strings to sign, in JSON, echoed back."""
    once = quote(secret, safe="")
    return {
        "raw": secret,
        "percent-encoded (the V1 canonical query)": once,
        "form-encoded (the V1 wire query, '+' for a space)": quote_plus(secret),
        "lowercase percent-encoding": lowercase_hex(once),
        "percent-encoded, '/' left as is (urllib's and yarl's default)": quote(secret),
        "percent-encoded twice (V1 string to sign)": quote(once, safe=""),
        "percent-encoded twice, lowercase": quote(lowercase_hex(once), safe=""),
        "JSON-escaped, '\\/' for '/'": json.dumps(secret)[1:-1].replace("/", "\\/"),
    }


CASES = [
    pytest.param(secret, form, id=f"{secret!r} {name}")
    for secret in (SECRET, SPACED)
    for name, form in encodings(secret).items()
]


@pytest.fixture
def redactor(monkeypatch: pytest.MonkeyPatch) -> logs.Redactor:
    """A fresh redactor in the real pipeline, so that test secrets do not outlive the test."""
    fresh = logs.Redactor()
    monkeypatch.setattr(logs, "REDACTOR", fresh)
    return fresh


def test_the_encodings_under_test_differ_from_the_raw_secret() -> None:
    """Each encoded case really differs from the raw secret, else masking it would prove nothing."""
    for secret in (SECRET, SPACED):
        forms = encodings(secret)
        assert [name for name, form in forms.items() if form == secret] == ["raw"]
    assert encodings(SPACED)["form-encoded (the V1 wire query, '+' for a space)"] == "ab+cd%2Fef"
    assert encodings(SECRET)["lowercase percent-encoding"] == "ab%2fcd%2bef%3dgh%3d%3d"


@pytest.mark.parametrize(("secret", "form"), CASES)
def test_a_secret_is_masked_in_json_logs_in_every_encoding(
    redactor: logs.Redactor, secret: str, form: str
) -> None:
    """Through the real structlog pipeline (JSON renderer), a secret added to the redactor is masked
    in each encoding it travels in: in the event, in a field, nested in dicts and lists."""
    out = io.StringIO()
    logs.configure(stream=out, json=True)
    redactor.add(secret)
    logs.get_logger("t").warning(
        f"server said: {form}",
        note=f"<{form}>",
        detail={"body": [f"x={form}&y=1"]},
    )
    record = json.loads(out.getvalue())
    assert record["event"] == "server said: [redacted]"
    assert record["note"] == "<[redacted]>"
    assert record["detail"] == {"body": ["x=[redacted]&y=1"]}


@pytest.mark.parametrize(("secret", "form"), CASES)
def test_a_secret_is_masked_in_console_logs_in_every_encoding(
    redactor: logs.Redactor, secret: str, form: str
) -> None:
    """The console renderer (a terminal's logs) gets the same masked values as JSON does."""
    out = io.StringIO()
    logs.configure(stream=out, json=False)
    redactor.add(secret)
    logs.get_logger("t").info("echo", note=f"<{form}>")
    assert form not in out.getvalue()
    assert "note=<[redacted]>" in out.getvalue()


def test_a_secret_not_added_is_left_alone(redactor: logs.Redactor) -> None:
    """Only what was added is masked: ordinary values in the same encodings pass through."""
    out = io.StringIO()
    logs.configure(stream=out, json=True)
    redactor.add(SECRET)
    logs.get_logger("t").info("echo", note=quote("other/value+1=2", safe=""))
    assert json.loads(out.getvalue())["note"] == "other%2Fvalue%2B1%3D2"


def test_secrets_given_to_the_constructor_are_masked_in_every_encoding() -> None:
    """Redactor(secrets) masks the same forms as Redactor().add(secret) does."""
    redactor = logs.Redactor([SECRET])
    event = redactor(None, "info", {"event": "x", "note": quote(SECRET, safe="")})
    assert event["note"] == "[redacted]"


def test_a_form_holding_a_shorter_one_is_masked_whole() -> None:
    """A secret ending in a backslash is the start of its own JSON-escaped form: the longer form
    is masked first, so no backslash of it is left behind."""
    secret = "ab\\"
    redactor = logs.Redactor([secret])
    event = redactor(None, "info", {"event": "x", "note": "<ab\\\\>"})
    assert event["note"] == "<[redacted]>"


def test_short_secrets_never_mask_inside_a_mark_already_put() -> None:
    """Every secret is masked in one pass: a one-letter secret that also occurs in the word
    "redacted" leaves the marks of the others whole."""
    redactor = logs.Redactor(["s", "t", "a-longer-secret"])
    event = redactor(None, "info", {"event": "x", "note": "a-longer-secret then s and t"})
    assert event["note"] == "[redacted] [redacted]hen [redacted] and [redacted]"


def test_counts_keyed_by_a_credential_error_code_stay_readable() -> None:
    """A count is never a secret: the run's errors by code keep SignatureDoesNotMatch's and
    InvalidSecurityToken.Expired's counts, while a text under such a name is still masked."""
    redactor = logs.Redactor()
    errors = {"SignatureDoesNotMatch": 3, "InvalidSecurityToken.Expired": 1.0, "Throttling": 2}
    event = redactor(None, "info", {"event": "x", "request_errors": errors, "token": "abc"})
    assert event["request_errors"] == errors
    assert event["token"] == "[redacted]"
