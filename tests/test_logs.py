"""Logs: secrets never reach the output."""

from __future__ import annotations

import io
import json

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
