"""Fuzzing the upload leg's parsers: any PostObject form is checked into a policy or an OSS
error, any uploaded bytes read as a package or as none, any PackageFile resolved or refused."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.sim.objects import ObjectStore
from runner.sim.packages import read_manifest
from runner.sim.params import SimError

pytestmark = pytest.mark.fuzz

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
FIELDS = st.dictionaries(
    st.sampled_from(["key", "OSSAccessKeyId", "policy", "Signature", "success_action_status"]),
    ANY_TEXT,
)


@given(fields=FIELDS, now=st.floats(allow_nan=False, allow_infinity=False))
def test_any_form_is_checked_or_refused(fields: dict[str, str], now: float) -> None:
    """The form check turns any fields into a policy or a 4xx SimError, never a crash."""
    store = ObjectStore()
    grant = store.grant("cn-shanghai", "127.0.0.1:1", 0.0, "rid")
    signed = {**dict(grant.form()), **fields}
    for candidate in (fields, signed):
        assert _status_of(store, grant.bucket, candidate, now) in range(200, 500)


def _status_of(store: ObjectStore, bucket: str, fields: dict[str, str], now: float) -> int:
    """200 for a form that passes the check, else the status of its refusal."""
    try:
        store.check(bucket, fields, now)
    except SimError as exc:
        return exc.status
    return 200


@given(forged=st.binary(max_size=200))
def test_a_policy_signed_by_us_but_odd_is_refused_cleanly(forged: bytes) -> None:
    """Even a validly signed policy that is not one of ours is refused with a SimError."""
    store = ObjectStore()
    encoded = base64.b64encode(forged).decode()
    fields = {
        "key": "k",
        "OSSAccessKeyId": store.access_key_id,
        "policy": encoded,
        "Signature": store.sign(encoded),
    }
    with pytest.raises(SimError):
        store.check("runner-sim-x", fields, 0.0)


@given(content=st.binary(max_size=400))
def test_any_upload_reads_as_a_package_or_none(content: bytes) -> None:
    """read_manifest never raises, whatever the bytes."""
    manifest = read_manifest(io.BytesIO(content))
    assert manifest is None or isinstance(manifest.migration_id, int)


@given(package_file=ANY_TEXT)
def test_any_package_file_is_resolved_or_refused(package_file: str) -> None:
    """Any PackageFile text names a stored object or is refused Invalid.Param."""
    with pytest.raises(SimError) as refused:
        ObjectStore().resolve(package_file)
    assert refused.value.code == "Invalid.Param"
