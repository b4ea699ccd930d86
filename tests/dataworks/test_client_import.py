"""AuthorizeFileUpload and CreateImportMigration: what goes on the wire and how answers are read."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from runner.dataworks.transport import ExchangeError
from runner.dataworks.upload import UploadGrant
from runner.models import ApiError, Created, ErrorKind, ImportSpec, PackageType, TaskKey
from tests.dataworks.test_client import json_response, make_client

GRANT = {
    "RequestId": "R-GRANT",
    "Bucket": "dw-import",
    "Endpoint": "oss-cn-hangzhou.aliyuncs.com",
    "ObjectKey": "pkg/abc/package.zip",
    "AccessKeyId": "LTAI-OSS",
    "EncodedPolicy": "eyJleHBpcmF0aW9uIjoiMjAzMCJ9",
    "Signature": "c2lnbmF0dXJl",
    "UseAccelerate": False,
}
SPEC = ImportSpec(
    TaskKey("cn-hangzhou", 810001, "a"),
    PackageType.DATAWORKS_MODEL,
    commit_rule='{"fileAutoCommit":true}',
    workspace_map='{"src":"dst"}',
    description="moved",
)


@pytest.mark.anyio
async def test_authorize_is_a_signed_get_to_openplatform_with_the_target_region() -> None:
    """AuthorizeFileUpload is a GET to openplatform.aliyuncs.com with Product and RegionId in
    the query, version 2019-12-19; the answer becomes a grant naming the PackageFile."""
    client, transport = make_client(json_response(200, GRANT))
    grant = await client.authorize_file_upload("cn-hangzhou")
    (request,) = transport.requests
    parts = urlsplit(request.url)
    assert (request.method, parts.netloc) == ("GET", "openplatform.aliyuncs.com")
    assert dict(parse_qsl(parts.query)) == {
        "Product": "dataworks-public",
        "RegionId": "cn-hangzhou",
    }
    assert request.headers["x-acs-action"] == "AuthorizeFileUpload"
    assert request.headers["x-acs-version"] == "2019-12-19"
    assert request.body == b""
    assert grant.package_file == "http://dw-import.oss-cn-hangzhou.aliyuncs.com/pkg/abc/package.zip"
    assert grant.request_id == "R-GRANT"
    assert grant.form() == [
        ("key", "pkg/abc/package.zip"),
        ("OSSAccessKeyId", "LTAI-OSS"),
        ("policy", "eyJleHBpcmF0aW9uIjoiMjAzMCJ9"),
        ("Signature", "c2lnbmF0dXJl"),
        ("success_action_status", "201"),
    ]


def test_a_grant_never_shows_its_policy_or_signature() -> None:
    """A grant's repr names where it posts, never the policy or the signature it carries."""
    grant = UploadGrant("b", "e.example", "k", "id", "POLICY-TEXT", "SIGNATURE-TEXT")
    assert "POLICY-TEXT" not in repr(grant)
    assert "SIGNATURE-TEXT" not in repr(grant)


@pytest.mark.anyio
async def test_authorize_with_endpoint_override_goes_there() -> None:
    """With --endpoint, AuthorizeFileUpload goes to that endpoint too."""
    client, transport = make_client(json_response(200, GRANT), endpoint="http://127.0.0.1:9")
    await client.authorize_file_upload("cn-hangzhou")
    assert transport.requests[0].url.startswith("http://127.0.0.1:9/?")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "change",
    [
        {"Bucket": None},
        {"ObjectKey": ""},
        {"Signature": 42},
        {"Endpoint": "evil.example/path"},
        {"ObjectKey": "a\nb"},
    ],
)
async def test_an_unusable_grant_is_a_malformed_answer(change: dict[str, object]) -> None:
    """A grant missing a field, or with a host or key that cannot be posted to, is malformed
    (retryable for a read): nothing is uploaded on its word."""
    client, _ = make_client(json_response(200, {**GRANT, **change}))
    with pytest.raises(ApiError) as caught:
        await client.authorize_file_upload("cn-hangzhou")
    assert caught.value.kind is ErrorKind.RETRYABLE


@pytest.mark.anyio
async def test_create_import_sends_every_parameter_in_the_form_body() -> None:
    """CreateImportMigration is a signed POST to the target region with the spec's parameters and
    the PackageFile in the form body; Data is the import's migration id."""
    client, transport = make_client(json_response(200, {"RequestId": "R2", "Data": 7001}))
    created = await client.create_import_migration("cn-hangzhou", SPEC.params(), "http://b.e/k")
    assert created == Created(7001, "R2")
    (request,) = transport.requests
    assert urlsplit(request.url).netloc == "dataworks.cn-hangzhou.aliyuncs.com"
    assert request.headers["x-acs-action"] == "CreateImportMigration"
    assert dict(parse_qsl(request.body.decode())) == {
        "ProjectId": "810001",
        "Name": "a",
        "PackageType": "DATAWORKS_MODEL",
        "PackageFile": "http://b.e/k",
        "CommitRule": '{"fileAutoCommit":true}',
        "WorkspaceMap": '{"src":"dst"}',
        "Description": "moved",
    }


@pytest.mark.anyio
async def test_a_lost_create_import_answer_is_an_unknown_outcome() -> None:
    """A create import whose answer is lost may have been applied: UNKNOWN_OUTCOME."""
    client, _ = make_client(ExchangeError("reset"))
    with pytest.raises(ApiError) as caught:
        await client.create_import_migration("cn-hangzhou", SPEC.params(), "http://b.e/k")
    assert caught.value.kind is ErrorKind.UNKNOWN_OUTCOME


@pytest.mark.anyio
async def test_create_import_without_an_id_is_malformed_and_unknown() -> None:
    """A create import answered without a migration id is an unknown outcome, not a success."""
    client, _ = make_client(json_response(200, {"RequestId": "R", "Data": None}))
    with pytest.raises(ApiError) as caught:
        await client.create_import_migration("cn-hangzhou", SPEC.params(), "http://b.e/k")
    assert caught.value.kind is ErrorKind.UNKNOWN_OUTCOME
