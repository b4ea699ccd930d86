"""The whole chain resolved through the run's transport: every mode fetches its key from a fake
STS, metadata service, credentials URI, command or CloudSSO; failures name mode and source."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest

from runner.dataworks.credentials import CredentialsError, NotFound
from runner.dataworks.identity import KeyRing, describe
from runner.dataworks.keys import RefreshingKeys, StaticKeys
from runner.dataworks.transport import FunctionTransport, HttpRequest
from tests.identity_fakes import BASE_KEY, METADATA_HOST, SSO_HOST, FakeCloud, Wall

ROLE_ARN = "acs:ram::1234567890:role/runner"
BASE = {"access_key_id": BASE_KEY.access_key_id, "access_key_secret": BASE_KEY.access_key_secret}
QUIET = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


def cli_file(home: Path, *profiles: dict[str, Any], current: str = "p") -> Path:
    folder = home / ".aliyun"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({"current": current, "profiles": list(profiles)}))
    return path


def ring(
    cloud: FakeCloud, home: Path, env: dict[str, str] | None = None, **options: Any
) -> KeyRing:
    return KeyRing(
        FunctionTransport(cloud),
        environ=QUIET if env is None else env,
        home=home,
        now=cloud.wall,
        sleep=cloud.wall.sleep,
        **options,
    )


def params(request: HttpRequest) -> dict[str, str]:
    found = dict(parse_qsl(urlsplit(request.url).query))
    found.update(parse_qsl(request.body.decode()))
    return found


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud(Wall())


@pytest.mark.anyio
async def test_static_keys_send_nothing(cloud: FakeCloud, tmp_path: Path) -> None:
    """A key from the environment is used as is: no request, its id is the account."""
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-s"}
    async with ring(cloud, tmp_path, env) as keys_ring:
        keys = await keys_ring.keys()
    assert isinstance(keys, StaticKeys)
    assert keys.account == "env-id"
    assert cloud.requests == []


@pytest.mark.anyio
async def test_ram_role_arn_assumes_the_role_signed_by_the_base_key(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    """RamRoleArn: one V1 AssumeRole over https, signed by the base key; account is the role."""
    role = {"ram_role_arn": ROLE_ARN, "expired_seconds": 900, "ram_session_name": "nightly"}
    cli_file(tmp_path, {"name": "p", "mode": "RamRoleArn", **BASE, **role})
    async with ring(cloud, tmp_path) as keys_ring:
        keys = await keys_ring.keys()
        key = await keys.current()
        assert await keys_ring.keys() is keys  # resolved once per profile
    assert keys.account == ROLE_ARN
    assert key.access_key_id.startswith("STS.")
    assert key.expiration == cloud.wall.now + 900
    (sent,) = cloud.requests
    assert sent.url.startswith("https://sts.aliyuncs.com/?")
    sent_params = params(sent)
    assert sent_params["AccessKeyId"] == BASE_KEY.access_key_id
    assert (sent_params["RoleArn"], sent_params["RoleSessionName"]) == (ROLE_ARN, "nightly")
    assert sent_params["DurationSeconds"] == "900"
    assert cloud.stats.sts["assume_role"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("extra", "endpoint", "url"),
    [
        ({"sts_region": "cn-hangzhou"}, None, "https://sts.cn-hangzhou.aliyuncs.com/"),
        ({"sts_region": "cn-hangzhou", "enable_vpc": True}, None, "https://sts-vpc.cn-hangzhou."),
        ({}, "http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
    ],
)
async def test_sts_endpoint(
    cloud: FakeCloud, tmp_path: Path, extra: dict[str, Any], endpoint: str | None, url: str
) -> None:
    """STS is regional with sts_region, sts-vpc with VPC endpoints, and --endpoint overrides."""
    cli_file(
        tmp_path, {"name": "p", "mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN, **extra}
    )
    async with ring(cloud, tmp_path, endpoint=endpoint) as keys_ring:
        await keys_ring.keys()
    assert cloud.requests[0].url.startswith(url)


@pytest.mark.anyio
async def test_chainable_role_signs_each_hop_with_the_previous_key(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    """ChainableRamRoleArn: the hop's temporary key signs the next AssumeRole (V1 with token)."""
    cli_file(
        tmp_path,
        {"name": "base", "mode": "AK", **BASE},
        {"name": "hop", "mode": "RamRoleArn", **BASE, "ram_role_arn": "acs:ram::1:role/hop"},
        {
            "name": "p",
            "mode": "ChainableRamRoleArn",
            "source_profile": "hop",
            "ram_role_arn": ROLE_ARN,
        },
    )
    async with ring(cloud, tmp_path) as keys_ring:
        key = await (await keys_ring.keys()).current()
    first, second = (params(r) for r in cloud.requests)
    assert first["AccessKeyId"] == BASE_KEY.access_key_id
    assert second["AccessKeyId"].startswith("STS.")
    assert "SecurityToken" in second
    assert key.access_key_id not in (first["AccessKeyId"], second["AccessKeyId"])


@pytest.mark.anyio
async def test_chained_caller_key_refused_as_expired_is_renewed_once(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    """When the hop's key is refused as expired, the hop is renewed and AssumeRole resent."""
    cli_file(
        tmp_path,
        {"name": "hop", "mode": "RamRoleArn", **BASE, "ram_role_arn": "acs:ram::1:role/hop"},
        {
            "name": "p",
            "mode": "ChainableRamRoleArn",
            "source_profile": "hop",
            "ram_role_arn": ROLE_ARN,
            "expired_seconds": 900,
        },
    )
    async with ring(cloud, tmp_path) as keys_ring:
        keys = await keys_ring.keys()
        hop_key = params(cloud.requests[1])["AccessKeyId"]
        cloud.issuer._minted[hop_key].ends = cloud.wall.now  # revoked under us
        keys.invalidate((await keys.current()).access_key_id)
        await keys.current()
    actions = [params(r).get("AccessKeyId", "") for r in cloud.requests]
    assert len(actions) == 5  # hop, role; role (refused), hop again, role
    assert actions[2] == hop_key
    assert actions[4] not in (hop_key, BASE_KEY.access_key_id)


@pytest.mark.anyio
async def test_oidc_from_the_environment_is_anonymous_and_rereads_its_token(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    """AssumeRoleWithOIDC carries no signature; the token file is read at every fetch."""
    token_file = tmp_path / "token"
    token_file.write_text("oidc-TOKEN-1\n")
    env = {
        **QUIET,
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1234567890:oidc-provider/ack",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    async with ring(cloud, tmp_path, env) as keys_ring:
        keys = await keys_ring.keys()
        first = await keys.current()
        token_file.write_text("oidc-TOKEN-2\n")
        keys.invalidate(first.access_key_id)
        await keys.current()
    one, two = cloud.requests
    assert "Signature" not in one.url
    assert "authorization" not in {k.lower() for k in one.headers}
    assert params(one)["Action"] == "AssumeRoleWithOIDC"
    assert (params(one)["OIDCToken"], params(two)["OIDCToken"]) == ("oidc-TOKEN-1", "oidc-TOKEN-2")
    assert cloud.stats.sts["assume_role_with_oidc"] == 2


@pytest.mark.anyio
async def test_ecs_metadata_imdsv2_first(cloud: FakeCloud, tmp_path: Path) -> None:
    """ECS metadata: PUT a token, GET the role name, GET the key, both GETs with the token."""
    async with ring(cloud, tmp_path, {}) as keys_ring:
        keys = await keys_ring.keys()
        await keys.current()
    assert keys.account == "ecs-ram-role:(instance)"
    put, role, key = cloud.of(METADATA_HOST)
    assert (put.method, urlsplit(put.url).path) == ("PUT", "/latest/api/token")
    assert put.headers["x-aliyun-ecs-metadata-token-ttl-seconds"] == "21600"
    assert urlsplit(key.url).path.endswith("/ram/security-credentials/ecs-role")
    assert (
        role.headers["x-aliyun-ecs-metadata-token"]
        == key.headers["x-aliyun-ecs-metadata-token"]
        == "imds-token-1"
    )


@pytest.mark.anyio
async def test_ecs_falls_back_to_v1_unless_disabled(cloud: FakeCloud, tmp_path: Path) -> None:
    """Without an IMDSv2 token the v1 requests follow; with IMDSv1 disabled that is an error."""
    cloud.metadata.v2 = False
    async with ring(cloud, tmp_path, {"ALIBABA_CLOUD_ECS_METADATA": "ecs-role"}) as keys_ring:
        await keys_ring.keys()
    assert [r.method for r in cloud.of(METADATA_HOST)] == ["PUT", "GET"]  # no role lookup
    cli_file(tmp_path, {"name": "p", "mode": "EcsRamRole", "ram_role_name": "ecs-role"})
    env = {**QUIET, "ALIBABA_CLOUD_IMDSV1_DISABLED": "true"}
    with pytest.raises(CredentialsError, match=r"EcsRamRole from .*profile 'p'.*IMDSv2 token"):
        async with ring(cloud, tmp_path, env) as keys_ring:
            await keys_ring.keys()


@pytest.mark.anyio
async def test_off_ecs_the_chain_goes_on_to_the_credentials_uri(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    """Metadata that cannot be reached (not on ECS) is passed over: the URI gives the key."""
    cloud.metadata.reachable = False
    env = {"ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:9999/_sim/credentials"}
    async with ring(cloud, tmp_path, env) as keys_ring:
        keys = await keys_ring.keys()
        key = await keys.current()
    assert isinstance(keys, RefreshingKeys)
    assert keys.account == "credentials-uri:http://127.0.0.1:9999/_sim/credentials"
    assert key.access_key_id.startswith("STS.")
    assert len(cloud.of(METADATA_HOST)) == 2  # one probe: the token PUT, then one v1 GET


@pytest.mark.anyio
async def test_nothing_anywhere_is_not_found(cloud: FakeCloud, tmp_path: Path) -> None:
    """Off ECS and without a URI, NotFound lists the places and why metadata did not answer."""
    cloud.metadata.reachable = False
    with pytest.raises(NotFound, match=r"ECS instance metadata.*cannot connect"):
        async with ring(cloud, tmp_path, {}) as keys_ring:
            await keys_ring.keys()


@pytest.mark.anyio
async def test_credentials_uri_failures_name_the_source(cloud: FakeCloud, tmp_path: Path) -> None:
    """An answer without Code Success is an error naming the URI (never its query or a value)."""

    async def handler(request: HttpRequest) -> Any:
        from tests.identity_fakes import json_answer

        return json_answer(200, {"Code": "Failed", "AccessKeySecret": "leaked-SECRET"})

    env = {**QUIET, "ALIBABA_CLOUD_CREDENTIALS_URI": "https://creds.example.com/c?token=hidden"}
    keys_ring = KeyRing(FunctionTransport(handler), environ=env, home=tmp_path)
    with pytest.raises(CredentialsError) as raised:
        async with keys_ring:
            await keys_ring.keys()
    message = str(raised.value)
    assert message.startswith("CredentialsURI from https://creds.example.com/c")
    assert "Code Success" in message
    assert "hidden" not in message
    assert "leaked-SECRET" not in message


EXTERNAL_OUTPUT = {
    "mode": "StsToken",
    "access_key_id": "STS.ext",
    "access_key_secret": "ext-SECRET",
    "sts_token": "ext-token",
    "expiration": "2027-01-15T09:00:00Z",
}


def _command(output: object, code: int = 0) -> str:
    script = f"import sys; print({json.dumps(json.dumps(output))}); sys.exit({code})"
    return f"{sys.executable} -c {json.dumps(script)}"


@pytest.mark.anyio
async def test_external_runs_the_command(cloud: FakeCloud, tmp_path: Path) -> None:
    """External: the command's JSON is the key, its expiration the refresh clock."""
    cli_file(
        tmp_path, {"name": "p", "mode": "External", "process_command": _command(EXTERNAL_OUTPUT)}
    )
    async with ring(cloud, tmp_path) as keys_ring:
        key = await (await keys_ring.keys()).current()
    assert (key.access_key_id, key.security_token) == ("STS.ext", "ext-token")
    assert key.expiration == cloud.wall.now + 3600  # 2027-01-15T09:00:00Z


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("output", "code", "match"),
    [
        (EXTERNAL_OUTPUT, 3, "exited with status 3"),
        ({**EXTERNAL_OUTPUT, "sts_token": ""}, 0, "StsToken without sts_token"),
        ("not json", 0, "not JSON|no JSON object"),
    ],
)
async def test_external_failures_name_the_profile(
    cloud: FakeCloud, tmp_path: Path, output: object, code: int, match: str
) -> None:
    """A failing command is an error naming External and its profile, never its output."""
    cli_file(tmp_path, {"name": "p", "mode": "External", "process_command": _command(output, code)})
    with pytest.raises(CredentialsError, match=match) as raised:
        async with ring(cloud, tmp_path) as keys_ring:
            await keys_ring.keys()
    assert "External from" in str(raised.value)
    assert "ext-SECRET" not in str(raised.value)


SSO = {
    "name": "p",
    "mode": "CloudSSO",
    "cloud_sso_sign_in_url": f"https://{SSO_HOST}",
    "cloud_sso_account_id": "1234567890",
    "cloud_sso_access_config": "ac-admin",
    "access_token": "sso-ACCESS-token",
}


@pytest.mark.anyio
async def test_cloud_sso_buys_a_key_with_the_access_token(cloud: FakeCloud, tmp_path: Path) -> None:
    """CloudSSO: POST /cloud-credentials with the bearer token; an expired sign-in is refused."""
    cli_file(tmp_path, {**SSO, "cloud_sso_access_token_expire": cloud.wall.now + 3600})
    async with ring(cloud, tmp_path) as keys_ring:
        keys = await keys_ring.keys()
    (sent,) = cloud.requests
    assert sent.url == f"https://{SSO_HOST}/cloud-credentials"
    assert keys.account == "cloudsso:1234567890/ac-admin"
    cli_file(tmp_path, {**SSO, "cloud_sso_access_token_expire": cloud.wall.now - 1})
    with pytest.raises(CredentialsError, match=r"CloudSSO from .*sign in again"):
        async with ring(cloud, tmp_path) as keys_ring:
            await keys_ring.keys()


@pytest.mark.anyio
async def test_sts_refusal_names_mode_source_code_and_hides_secrets(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    """A refused AssumeRole names mode, file and code, masks an echoed secret, is not retried."""
    path = cli_file(tmp_path, {"name": "p", "mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN})
    echo = f"role not found (caller secret {BASE_KEY.access_key_secret})"
    cloud.refuse_sts = (404, "EntityNotExist.Role", echo)
    async with ring(cloud, tmp_path) as keys_ring:
        with pytest.raises(CredentialsError) as raised:
            await keys_ring.keys()
        with pytest.raises(CredentialsError):  # the same profile again: no new request
            await keys_ring.keys()
    message = str(raised.value)
    assert message.startswith(f"RamRoleArn from {path} profile 'p': AssumeRole refused:")
    assert "EntityNotExist.Role" in message
    assert BASE_KEY.access_key_secret not in message
    assert len(cloud.requests) == 1


@pytest.mark.anyio
async def test_sts_outage_is_retried_then_reported(cloud: FakeCloud, tmp_path: Path) -> None:
    """A 503 from STS is tried three times, backing off, then reported."""
    cli_file(tmp_path, {"name": "p", "mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN})
    cloud.refuse_sts = (503, "ServiceUnavailable", "try later")
    with pytest.raises(CredentialsError, match="ServiceUnavailable"):
        async with ring(cloud, tmp_path) as keys_ring:
            await keys_ring.keys()
    assert len(cloud.requests) == 3
    assert cloud.wall.slept == [0.5, 1.0]


@pytest.mark.anyio
async def test_credentials_ini_ram_role_arn(cloud: FakeCloud, tmp_path: Path) -> None:
    """credentials.ini's ram_role_arn type assumes its role like the aliyun-cli mode."""
    folder = tmp_path / ".alibabacloud"
    folder.mkdir()
    (folder / "credentials.ini").write_text(
        f"[default]\ntype = ram_role_arn\naccess_key_id = {BASE_KEY.access_key_id}\n"
        f"access_key_secret = {BASE_KEY.access_key_secret}\nrole_arn = {ROLE_ARN}\n"
    )
    async with ring(cloud, tmp_path) as keys_ring:
        keys = await keys_ring.keys()
    assert keys.account == ROLE_ARN
    assert params(cloud.requests[0])["DurationSeconds"] == "3600"


def test_describe_says_mode_and_source(tmp_path: Path) -> None:
    """describe() tells which mode and source a run would use, without the network."""
    path = cli_file(tmp_path, {"name": "p", "mode": "EcsRamRole"})
    assert describe(environ=QUIET, home=tmp_path) == f"EcsRamRole from {path} profile 'p'"


@pytest.mark.anyio
async def test_each_profile_has_its_own_provider(cloud: FakeCloud, tmp_path: Path) -> None:
    """Two named profiles give two providers with their own accounts, from any task."""
    cli_file(
        tmp_path,
        {"name": "a", "mode": "AK", **BASE},
        {"name": "b", "mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN},
    )
    found: dict[str, str] = {}
    async with ring(cloud, tmp_path) as keys_ring:

        async def resolve(name: str) -> None:
            found[name] = (await keys_ring.keys(name)).account

        async with anyio.create_task_group() as tg:
            for name in ("a", "b", "a", "b"):
                tg.start_soon(resolve, name)
    assert found == {"a": BASE_KEY.access_key_id, "b": ROLE_ARN}
    assert cloud.stats.sts["assume_role"] == 1
