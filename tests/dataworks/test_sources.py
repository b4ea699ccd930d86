"""The chain walked without a network call: every mode becomes its recipe, or a clear error."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from runner.dataworks.credentials import CredentialsError, NotFound, resolve
from runner.dataworks.sources import (
    AssumeRole,
    CloudSso,
    CredentialsUri,
    EcsRole,
    External,
    OidcRole,
    Static,
    account_of,
    find,
)

BASE = {"access_key_id": "base-id", "access_key_secret": "base-SECRET-1"}
ROLE_ARN = "acs:ram::1234567890:role/runner"
OIDC_ENV = {
    "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1234567890:oidc-provider/k8s",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/var/run/token",
}
NO_MACHINE = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


def cli_file(home: Path, *profiles: dict[str, Any], current: str = "p") -> Path:
    folder = home / ".aliyun"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({"current": current, "profiles": list(profiles)}))
    return path


def ini_file(home: Path, text: str) -> Path:
    folder = home / ".alibabacloud"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "credentials.ini"
    path.write_text(text)
    return path


def only(home: Path, profile: str | None = None, **env: str) -> Any:
    recipes, _ = find(profile, environ={**NO_MACHINE, **env}, home=home)
    assert len(recipes) == 1
    return recipes[0]


def test_environment_key_and_sts_token(tmp_path: Path) -> None:
    """The environment's key comes first; with a token it is a static STS key."""
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "sec",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "tok",
        **OIDC_ENV,
    }
    recipe = only(tmp_path, **env)
    assert isinstance(recipe, Static)
    assert recipe.credentials.security_token == "tok"
    assert recipe.origin.mode == "StsToken"


def test_oidc_from_the_environment_comes_before_the_files(tmp_path: Path) -> None:
    """The three OIDC variables win over the aliyun-cli file, as in the official chain."""
    cli_file(tmp_path, {"name": "p", "mode": "AK", **BASE})
    recipe = only(tmp_path, ALIBABA_CLOUD_ROLE_SESSION_NAME="pod-1", **OIDC_ENV)
    assert isinstance(recipe, OidcRole)
    assert (recipe.role.role_arn, recipe.role.session_name) == (ROLE_ARN, "pod-1")
    assert recipe.token_file == Path("/var/run/token")
    assert account_of(recipe) == ROLE_ARN


def test_an_explicit_profile_skips_the_environment(tmp_path: Path) -> None:
    """--profile means that profile even when the environment holds a key or OIDC settings."""
    cli_file(tmp_path, {"name": "p", "mode": "AK", **BASE}, current="other")
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s", **OIDC_ENV}
    recipe = only(tmp_path, "p", **env)
    assert isinstance(recipe, Static)
    assert recipe.credentials.access_key_id == "base-id"


@pytest.mark.parametrize(
    ("profile", "kind"),
    [
        ({"mode": "AK", **BASE}, Static),
        ({"mode": "StsToken", **BASE, "sts_token": "t"}, Static),
        (
            {"mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN, "expired_seconds": 900},
            AssumeRole,
        ),
        ({"mode": "EcsRamRole", "ram_role_name": "ecs-role"}, EcsRole),
        (
            {
                "mode": "OIDC",
                "ram_role_arn": ROLE_ARN,
                "oidc_provider_arn": "acs:ram::1:oidc-provider/x",
                "oidc_token_file": "/t",
            },
            OidcRole,
        ),
        ({"mode": "External", "process_command": "get-keys --json"}, External),
        (
            {
                "mode": "CloudSSO",
                "cloud_sso_sign_in_url": "https://signin.example.com/device/login",
                "cloud_sso_account_id": "123",
                "cloud_sso_access_config": "ac-1",
                "access_token": "sso-token",
                "cloud_sso_access_token_expire": 4_000_000_000,
            },
            CloudSso,
        ),
        (
            {"mode": "CredentialsURI", "credentials_uri": "http://127.0.0.1:9/c?token=abc"},
            CredentialsUri,
        ),
    ],
)
def test_every_cli_mode_has_its_recipe(
    tmp_path: Path, profile: dict[str, Any], kind: type[Any]
) -> None:
    """Each aliyun-cli mode becomes the recipe that fetches its keys."""
    cli_file(tmp_path, {"name": "p", **profile})
    recipe = only(tmp_path)
    assert isinstance(recipe, kind)
    assert recipe.origin.mode == profile["mode"]
    assert "profile 'p'" in recipe.origin.where
    assert "token=abc" not in str(recipe.origin)  # a URI's query may hold a secret


def test_ram_role_arn_fields(tmp_path: Path) -> None:
    """RamRoleArn carries its base key and every STS field the profile sets."""
    cli_file(
        tmp_path,
        {
            "name": "p",
            "mode": "RamRoleArn",
            **BASE,
            "ram_role_arn": ROLE_ARN,
            "ram_session_name": "nightly",
            "expired_seconds": 900,
            "policy": '{"Version": "1"}',
            "external_id": "ext",
            "sts_region": "cn-hangzhou",
            "enable_vpc": True,
        },
    )
    recipe = only(tmp_path)
    assert isinstance(recipe, AssumeRole)
    assert isinstance(recipe.base, Static)
    assert recipe.base.credentials.access_key_id == "base-id"
    role = recipe.role
    assert (role.session_name, role.duration, role.external_id) == ("nightly", 900, "ext")
    assert (role.sts_region, role.vpc, role.policy) == ("cn-hangzhou", True, '{"Version": "1"}')
    assert account_of(recipe) == ROLE_ARN


def test_chainable_role_follows_its_source_profile(tmp_path: Path) -> None:
    """ChainableRamRoleArn assumes its role with the key its source profile gives (a chain)."""
    cli_file(
        tmp_path,
        {"name": "base", "mode": "AK", **BASE},
        {
            "name": "hop",
            "mode": "ChainableRamRoleArn",
            "source_profile": "base",
            "ram_role_arn": "acs:ram::1:role/hop",
        },
        {
            "name": "p",
            "mode": "ChainableRamRoleArn",
            "source_profile": "hop",
            "ram_role_arn": ROLE_ARN,
        },
    )
    recipe = only(tmp_path)
    assert isinstance(recipe, AssumeRole)
    assert isinstance(recipe.base, AssumeRole)
    assert recipe.base.role.role_arn == "acs:ram::1:role/hop"
    assert isinstance(recipe.base.base, Static)


def test_chainable_role_loops_are_refused(tmp_path: Path) -> None:
    """A source_profile loop is an error naming the mode and the file, not a hang."""
    cli_file(
        tmp_path,
        {
            "name": "p",
            "mode": "ChainableRamRoleArn",
            "source_profile": "q",
            "ram_role_arn": ROLE_ARN,
        },
        {
            "name": "q",
            "mode": "ChainableRamRoleArn",
            "source_profile": "p",
            "ram_role_arn": ROLE_ARN,
        },
    )
    with pytest.raises(CredentialsError, match=r"ChainableRamRoleArn from .*config.json.*loop"):
        only(tmp_path)


def test_oauth_without_a_valid_cached_key_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """An OAuth profile whose cached key is missing or expiring is refused clearly: the message
    names the mode, the file and how to renew it, never a token."""
    cli_file(
        tmp_path,
        {
            "name": "p",
            "mode": "OAuth",
            "oauth_refresh_token": "rt-SECRET",
            "access_key_id": "STS.k",
            "access_key_secret": "s-SECRET",
            "sts_token": "t-SECRET",
            "sts_expiration": int(time.time()) + 60,
        },
    )
    with pytest.raises(CredentialsError) as raised:
        only(tmp_path)
    message = str(raised.value)
    assert "OAuth from" in message
    assert "config.json profile 'p'" in message
    assert "renew" in message
    assert "SECRET" not in message


def test_oauth_uses_the_key_aliyun_cli_keeps_while_it_is_valid(tmp_path: Path) -> None:
    """An OAuth profile signs with the STS key aliyun-cli keeps for it, until its expiry."""
    expires = int(time.time()) + 3600
    cli_file(
        tmp_path,
        {
            "name": "p",
            "mode": "OAuth",
            "access_key_id": "STS.k",
            "access_key_secret": "s",
            "sts_token": "t",
            "sts_expiration": expires,
        },
    )
    recipe = only(tmp_path)
    assert isinstance(recipe, Static)
    assert (recipe.credentials.access_key_id, recipe.credentials.expiration) == ("STS.k", expires)


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        ({"mode": "AK", "access_key_id": "x"}, "AK from .* lacks"),
        ({"mode": "RamRoleArn", **BASE}, "RamRoleArn from .* names no role ARN"),
        (
            {"mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN, "expired_seconds": 60},
            "at least 900",
        ),
        (
            {"mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN, "ram_session_name": "a b"},
            "session name",
        ),
        ({"mode": "OIDC", "ram_role_arn": ROLE_ARN}, "OIDC from .* lacks the OIDC provider"),
        ({"mode": "External"}, "External from .* no process_command"),
        ({"mode": "CloudSSO", "access_token": "t"}, "CloudSSO from .* lacks"),
        (
            {"mode": "ChainableRamRoleArn", "source_profile": "none", "ram_role_arn": ROLE_ARN},
            "source_profile 'none'",
        ),
        ({"mode": "CredentialsURI"}, "CredentialsURI from .* has no credentials_uri"),
        (
            {"mode": "CredentialsURI", "credentials_uri": "file:///etc/passwd"},
            "credentials_uri is not an http",
        ),
        ({"mode": "Mystery"}, "mode 'Mystery' is unknown"),
    ],
)
def test_broken_profiles_name_mode_and_file(
    tmp_path: Path, profile: dict[str, Any], match: str
) -> None:
    """A profile that is present but broken is an error naming its mode and file."""
    cli_file(tmp_path, {"name": "p", **profile})
    with pytest.raises(CredentialsError, match=match) as raised:
        only(tmp_path)
    assert "base-SECRET-1" not in str(raised.value)


@pytest.mark.parametrize(
    ("section", "kind"),
    [
        ("type = access_key\naccess_key_id = i\naccess_key_secret = s # comment\n", Static),
        (
            "type = ram_role_arn\naccess_key_id = i\naccess_key_secret = s\n"
            f"role_arn = {ROLE_ARN}\n",
            AssumeRole,
        ),
        (
            f"type = oidc_role_arn\nrole_arn = {ROLE_ARN}\n"
            "oidc_provider_arn = acs:ram::1:oidc-provider/x\noidc_token_file_path = /t\n",
            OidcRole,
        ),
        ("type = ecs_ram_role\nrole_name = r\n", EcsRole),
    ],
)
def test_credentials_ini_types(tmp_path: Path, section: str, kind: type[Any]) -> None:
    """credentials.ini's types access_key, ram_role_arn, oidc_role_arn, ecs_ram_role are read."""
    ini_file(tmp_path, f"[default]\n{section}")
    recipe = only(tmp_path)
    assert isinstance(recipe, kind)
    if isinstance(recipe, Static):
        assert recipe.credentials.access_key_secret == "s"  # the '#' comment is cut, as the SDK


def test_rsa_key_pair_is_refused(tmp_path: Path) -> None:
    """The retired rsa_key_pair type is refused with the file and section named."""
    ini_file(tmp_path, "[default]\ntype = rsa_key_pair\npublic_key_id = x\n")
    with pytest.raises(CredentialsError, match=r"credentials.ini \[default\].*rsa_key_pair"):
        only(tmp_path)


def test_machine_sources_come_last_in_order(tmp_path: Path) -> None:
    """With nothing configured, ECS metadata is tried before the credentials URI."""
    env = {"ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:9/creds?token=abc"}
    recipes, tried = find(None, environ=env, home=tmp_path)
    assert [type(r) for r in recipes] == [EcsRole, CredentialsUri]
    assert isinstance(recipes[0], EcsRole)
    assert recipes[0].probe
    assert "ECS instance metadata" in tried
    uri = recipes[1]
    assert isinstance(uri, CredentialsUri)
    assert "token=abc" not in str(uri.origin)  # a query may hold a secret: never shown
    assert "token=abc" not in repr(uri)


def test_metadata_can_be_disabled(tmp_path: Path) -> None:
    """ALIBABA_CLOUD_ECS_METADATA_DISABLED=true leaves the URI alone; IMDSv1 off is carried."""
    env = {"ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:9/c"}
    recipe = only(tmp_path, **env)
    assert isinstance(recipe, CredentialsUri)
    recipes, _ = find(
        None,
        environ={"ALIBABA_CLOUD_IMDSV1_DISABLED": "true", "ALIBABA_CLOUD_ECS_METADATA": "r"},
        home=tmp_path,
    )
    assert recipes == (EcsRole(recipes[0].origin, "r", True, probe=True),)


def test_nothing_found_lists_the_places(tmp_path: Path) -> None:
    """With no source at all, NotFound lists every place looked at."""
    with pytest.raises(NotFound) as raised:
        find(None, environ=NO_MACHINE, home=tmp_path)
    message = str(raised.value)
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in message
    assert "config.json" in message
    assert "credentials.ini" in message


def test_static_resolve_names_a_network_mode(tmp_path: Path) -> None:
    """resolve() still gives static keys, and names the mode of a source that needs the network."""
    cli_file(tmp_path, {"name": "p", "mode": "RamRoleArn", **BASE, "ram_role_arn": ROLE_ARN})
    with pytest.raises(CredentialsError, match=r"RamRoleArn from .*KeyRing"):
        resolve(environ=NO_MACHINE, home=tmp_path)


def test_a_profile_only_in_credentials_ini_is_found_beside_a_cli_file(tmp_path: Path) -> None:
    """A named profile missing from config.json is looked for in credentials.ini."""
    cli_file(tmp_path, {"name": "p", "mode": "AK", **BASE})
    ini_file(tmp_path, "[inionly]\naccess_key_id = ini-id\naccess_key_secret = ini-s\n")
    for recipe in (
        only(tmp_path, "inionly"),
        only(tmp_path, ALIBABA_CLOUD_PROFILE="inionly"),
    ):
        assert isinstance(recipe, Static)
        assert recipe.credentials.access_key_id == "ini-id"


def test_a_profile_named_by_the_environment_and_found_nowhere_is_an_error(
    tmp_path: Path,
) -> None:
    """ALIBABA_CLOUD_PROFILE naming a missing profile never falls through to the machine's
    sources (another identity): the error names the variable and both files."""
    cli_file(tmp_path, {"name": "p", "mode": "AK", **BASE})
    env = {"ALIBABA_CLOUD_PROFILE": "prod", "ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:9/c"}
    with pytest.raises(NotFound, match=r"no profile 'prod' \(ALIBABA_CLOUD_PROFILE\)") as raised:
        find(None, environ=env, home=tmp_path)
    assert "config.json" in str(raised.value)
    assert "credentials.ini" in str(raised.value)


@pytest.mark.parametrize(
    ("env", "lacking"),
    [
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "id"}, "but not ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t"}, "but not ALIBABA_CLOUD_ACCESS_KEY_ID"),
        ({"ALIBABA_CLOUD_SECURITY_TOKEN": "tok"}, "but not ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ],
)
def test_half_a_key_in_the_environment_is_an_error(
    tmp_path: Path, env: dict[str, str], lacking: str
) -> None:
    """A key id without its secret (or the reverse) is an error, not a step to the profile
    in config.json, which may be another account; the values are never shown."""
    cli_file(tmp_path, {"name": "p", "mode": "AK", **BASE})
    with pytest.raises(CredentialsError, match=lacking) as raised:
        find(None, environ={**NO_MACHINE, **env}, home=tmp_path)
    for value in env.values():
        assert value not in str(raised.value)


def test_part_of_the_oidc_environment_is_an_error(tmp_path: Path) -> None:
    """The OIDC provider or token file without the rest is an error naming what is lacking;
    the role ARN alone is no OIDC setting and is passed by."""
    cli_file(tmp_path, {"name": "p", "mode": "AK", **BASE})
    partial = {k: v for k, v in OIDC_ENV.items() if k != "ALIBABA_CLOUD_OIDC_TOKEN_FILE"}
    with pytest.raises(CredentialsError, match="lacks ALIBABA_CLOUD_OIDC_TOKEN_FILE"):
        find(None, environ={**NO_MACHINE, **partial}, home=tmp_path)
    recipe = only(tmp_path, ALIBABA_CLOUD_ROLE_ARN=ROLE_ARN)
    assert isinstance(recipe, Static)


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"current": "p", "profiles": {"p": {"mode": "AK"}}}, "'profiles' is not a list"),
        ({"current": "p", "profiles": "p"}, "'profiles' is not a list"),
        ({"current": "prod", "profiles": [{"name": "p", **BASE}]}, "current profile 'prod'"),
    ],
)
def test_an_inconsistent_cli_file_is_an_error(
    tmp_path: Path, document: dict[str, Any], match: str
) -> None:
    """A config.json whose profiles are not a list, or whose current profile is missing, is an
    error naming the file, never skipped for the next source."""
    folder = tmp_path / ".aliyun"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(document))
    env = {"ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:9/c"}
    with pytest.raises(CredentialsError, match=match) as raised:
        find(None, environ={**NO_MACHINE, **env}, home=tmp_path)
    assert "config.json" in str(raised.value)


def test_a_cli_file_without_current_uses_its_default_profile(tmp_path: Path) -> None:
    """With no current profile, config.json's `default` is taken, and without one the chain
    goes on to credentials.ini."""
    folder = tmp_path / ".aliyun"
    folder.mkdir()
    profiles = [{"name": "default", "mode": "AK", **BASE}]
    (folder / "config.json").write_text(json.dumps({"profiles": profiles}))
    recipe = only(tmp_path)
    assert isinstance(recipe, Static)
    assert recipe.credentials.access_key_id == "base-id"
    (folder / "config.json").write_text(json.dumps({"profiles": []}))
    ini_file(tmp_path, "[default]\naccess_key_id = ini-id\naccess_key_secret = ini-s\n")
    recipe = only(tmp_path)
    assert isinstance(recipe, Static)
    assert recipe.credentials.access_key_id == "ini-id"
