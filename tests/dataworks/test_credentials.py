"""The credential chain: environment, aliyun-cli profiles, credentials.ini; secrets stay hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.dataworks.credentials import Credentials, CredentialsError, resolve

ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret"}


def cli_config(home: Path, profiles: list[dict[str, str]], current: str = "default") -> None:
    folder = home / ".aliyun"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"current": current, "profiles": profiles}))


AK = {"name": "default", "mode": "AK", "access_key_id": "cli-id", "access_key_secret": "cli-sec"}
STS = {
    "name": "sts",
    "mode": "StsToken",
    "access_key_id": "STS.id",
    "access_key_secret": "sts-sec",
    "sts_token": "tok",
}


def test_environment_comes_first(tmp_path: Path) -> None:
    """The environment wins over profile files, as in Alibaba's own chain."""
    cli_config(tmp_path, [AK])
    creds = resolve(environ=ENV, home=tmp_path)
    assert (creds.access_key_id, creds.source) == ("env-id", "environment")


def test_cli_profile_current_and_named(tmp_path: Path) -> None:
    """The file's current profile is used, or the one ALIBABA_CLOUD_PROFILE names."""
    cli_config(tmp_path, [AK, STS])
    assert resolve(environ={}, home=tmp_path).access_key_id == "cli-id"
    sts = resolve(environ={"ALIBABA_CLOUD_PROFILE": "sts"}, home=tmp_path)
    assert (sts.access_key_id, sts.security_token) == ("STS.id", "tok")


def test_explicit_profile_skips_the_environment(tmp_path: Path) -> None:
    """--profile means that profile, even when the environment holds a key."""
    cli_config(tmp_path, [AK, STS])
    assert resolve("sts", environ=ENV, home=tmp_path).access_key_id == "STS.id"


def test_missing_named_profile_is_an_error(tmp_path: Path) -> None:
    """Asking for a profile that is not there says so, naming both files looked in."""
    cli_config(tmp_path, [AK])
    with pytest.raises(CredentialsError, match=r"no profile 'prod' \(--profile\)") as raised:
        resolve("prod", environ={}, home=tmp_path)
    assert "config.json" in str(raised.value)
    assert "credentials.ini" in str(raised.value)


def test_unsupported_mode_is_refused_clearly(tmp_path: Path) -> None:
    """A RamRoleArn profile is refused with the mode named, never half-used."""
    cli_config(tmp_path, [{"name": "default", "mode": "RamRoleArn", "access_key_id": "x"}])
    with pytest.raises(CredentialsError, match="RamRoleArn"):
        resolve(environ={}, home=tmp_path)


def test_credentials_ini(tmp_path: Path) -> None:
    """credentials.ini's [default] (or the named section) of type access_key is read."""
    folder = tmp_path / ".alibabacloud"
    folder.mkdir()
    (folder / "credentials.ini").write_text(
        "[default]\ntype = access_key\naccess_key_id = ini-id\naccess_key_secret = ini-sec\n"
    )
    env = {"ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"}
    assert resolve(environ=env, home=tmp_path).access_key_id == "ini-id"


def test_nothing_found_names_what_was_tried(tmp_path: Path) -> None:
    """With no credentials anywhere the error lists the places looked at."""
    with pytest.raises(CredentialsError) as raised:
        resolve(environ={}, home=tmp_path)
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in str(raised.value)
    assert "config.json" in str(raised.value)


def test_secrets_never_in_repr_or_errors(tmp_path: Path) -> None:
    """Neither the secret nor the token shows in a repr or in an error message."""
    creds = Credentials("id", "the-secret", "the-token")
    assert "the-secret" not in repr(creds)
    assert "the-token" not in repr(creds)
    cli_config(tmp_path, [{**STS, "sts_token": ""}])
    with pytest.raises(CredentialsError) as raised:
        resolve("sts", environ={}, home=tmp_path)
    assert "sts-sec" not in str(raised.value)
