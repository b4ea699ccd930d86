"""Fuzzing the signer's inputs: any parameters and credentials give a request the simulator's
independent check accepts, or a SigningError; never another exception."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.dataworks import signing
from runner.dataworks.credentials import Credentials
from runner.models import ExportMode, ExportSpec, ObjectStatus, TaskKey
from runner.sim import auth

pytestmark = pytest.mark.fuzz

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
HOST = "dataworks.cn-shanghai.aliyuncs.com"
# header-safe credential text (the credential chain reads them from files and the environment)
TOKEN_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
KEY_ID = st.from_regex(r"[A-Za-z0-9.]{1,30}", fullmatch=True)  # as Alibaba issues them (STS. …)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
PARAMS = st.dictionaries(st.text(min_size=1, max_size=12), ANY_TEXT, max_size=6)


@given(
    version=st.sampled_from(["v3", "v1"]),
    params=PARAMS,
    key_id=KEY_ID,
    secret=st.text(min_size=1, max_size=40),
    token=st.none() | TOKEN_TEXT,
    nonce=TOKEN_TEXT,
)
def test_any_parameters_sign_and_verify_or_are_refused(
    version: signing.SignatureVersion,
    params: dict[str, str],
    key_id: str,
    secret: str,
    token: str | None,
    nonce: str,
) -> None:
    """A signed request is verified by the simulator's check (which recomputes the signature
    from the decoded request), or signing refuses it with SigningError (or, for V1, a body key
    that collides with a signing parameter, ValueError)."""
    credentials = Credentials(key_id, secret, token)
    refused: ValueError | None = None
    try:
        signed = signing.build_request(
            signature_version=version,
            method="POST",
            host=HOST,
            action="CreateExportMigration",
            api_version="2020-05-18",
            body_params=params,
            credentials=credentials,
            timestamp=signing.timestamp_of(NOW),
            nonce=nonce,
        )
    except ValueError as caught:  # SigningError is one
        refused = caught
    if refused is not None:
        if not isinstance(refused, signing.SigningError):
            assert version == "v1"
            assert "collide" in str(refused)
        return
    parts = urlsplit(signed.path_and_query)
    incoming = auth.IncomingRequest(
        method=signed.method,
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={name.lower(): value for name, value in signed.headers.items()},
        body=signed.body,
    )
    keys = {key_id: auth.Key(key_id, secret, token)}
    assert auth.verify(incoming, keys, NOW) is None
    signed.body.decode("ascii")  # the form body is plain ASCII on the wire


@given(
    value=st.tuples(st.text(max_size=8), st.integers(0xD800, 0xDFFF), st.text(max_size=8)).map(
        lambda parts: parts[0] + chr(parts[1]) + parts[2]
    )
)
def test_a_lone_surrogate_is_a_signing_error(value: str) -> None:
    """Text that cannot be UTF-8 is refused before anything is built (never UnicodeEncodeError)."""
    with pytest.raises(signing.SigningError):
        signing.build_request(
            signature_version="v3",
            method="POST",
            host=HOST,
            action="A",
            api_version="2020-05-18",
            body_params={"Name": value},
            credentials=Credentials("AK", "SK"),
            timestamp=signing.timestamp_of(NOW),
            nonce="n",
        )


_FORM_TEXT = st.text(alphabet=st.sampled_from("aZ09_.~-=&+% /\u00e9"), max_size=8)


@given(st.dictionaries(_FORM_TEXT, _FORM_TEXT, max_size=5))
def test_a_form_body_is_the_sdks_whatever_its_names_and_values_hold(
    params: dict[str, str],
) -> None:
    """The form body is quote_plus of each sorted name and value, joined by '=' and '&', also
    when a name or value holds '=' or '&' (the plain-text shortcut never takes those)."""
    from urllib.parse import quote_plus

    expected = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(params.items()))
    assert signing.form_encode(params) == expected


_SPEC_TEXT = st.text(alphabet=st.sampled_from("aZ09_.~-=& +%\u00e9"), min_size=1, max_size=12)


@given(
    name=_SPEC_TEXT,
    description=st.none() | _SPEC_TEXT,
    mode=st.sampled_from(list(ExportMode)),
    status=st.none() | st.sampled_from(list(ObjectStatus)),
    since=st.none() | st.integers(min_value=0, max_value=2**53),
)
def test_a_plain_fingerprint_is_the_create_body_itself(
    name: str,
    description: str | None,
    mode: ExportMode,
    status: ObjectStatus | None,
    since: int | None,
) -> None:
    """Whenever a spec's fingerprint passes as its own form encoding, it is exactly the body
    form_encode makes of the spec's parameters (so the client may send it as is)."""
    from runner.dataworks.encoding import form_encode, is_plain_form

    spec = ExportSpec(TaskKey("cn-shanghai", 7, name), mode, status, description, since)
    params = spec.request_params()
    if is_plain_form(spec.fingerprint(), len(params)):
        assert spec.fingerprint() == form_encode(params)
