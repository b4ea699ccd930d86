"""Where credentials come from: the chain walked without a network call, into a recipe.

The order is the official default chain's, first match wins:

1. the environment: ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN;
2. OIDC from ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE;
3. the aliyun-cli file `~/.aliyun/config.json` (profile: the explicit one, else
   ALIBABA_CLOUD_PROFILE, else the file's `current`), every mode (OAuth: the key it keeps);
4. `~/.alibabacloud/credentials.ini` (or ALIBABA_CLOUD_CREDENTIALS_FILE), section: the profile
   or `default`; types access_key, ram_role_arn, oidc_role_arn, ecs_ram_role (a profile named
   by --profile or ALIBABA_CLOUD_PROFILE is in 3 or in 4, else it is an error);
5. ECS instance metadata, unless ALIBABA_CLOUD_ECS_METADATA_DISABLED=true;
6. ALIBABA_CLOUD_CREDENTIALS_URI.

An explicit profile skips the environment (1, 2) and the machine's sources (5, 6). A source that
is present but broken (half a key in the environment, part of the OIDC settings, a config.json
whose current profile is missing) is an error naming its mode and file, never a silent step to
the next one (which could be another account). Only 5 and 6 need the network to tell whether
they match: they come back as candidates, tried in order by `runner.dataworks.identity`.
"""

from __future__ import annotations

import configparser
import json
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.dataworks.credentials import (
    ENV_CLI_PROFILE_DISABLED,
    ENV_CREDENTIALS_FILE,
    ENV_KEY_ID,
    ENV_KEY_SECRET,
    ENV_PROFILE,
    ENV_TOKEN,
    Credentials,
    CredentialsError,
    NotFound,
)
from runner.dataworks.recipes import (
    AssumeRole,
    CloudSso,
    CredentialsUri,
    EcsRole,
    External,
    OidcRole,
    Origin,
    Recipe,
    Role,
    Static,
    account_of,
)
from runner.dataworks.source_checks import (
    ENV_CREDENTIALS_URI,
    key_of,
    oidc_of,
    role_of,
    uri_recipe,
)

ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"
ENV_ROLE_SESSION_NAME = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
ENV_STS_REGION = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"
ENV_ECS_ROLE = "ALIBABA_CLOUD_ECS_METADATA"  # the role name, as the official chain reads it
ENV_ECS_DISABLED = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
ENV_IMDSV1_DISABLED = "ALIBABA_CLOUD_IMDSV1_DISABLED"

MAX_CHAIN = 8  # ChainableRamRoleArn profiles followed at most

__all__ = [
    "AssumeRole",
    "CloudSso",
    "CredentialsUri",
    "EcsRole",
    "External",
    "OidcRole",
    "Origin",
    "Recipe",
    "Role",
    "Static",
    "account_of",
    "default_profile",
    "find",
]


def find(
    profile: str | None, *, environ: Mapping[str, str], home: Path
) -> tuple[tuple[Recipe, ...], tuple[str, ...]]:
    """The recipes to try in order (one, unless only the machine's sources are left) and the
    places looked at. CredentialsError when a source is broken or none is found."""
    env = environ
    found: Recipe | None
    if profile is None:
        found = _from_env(env) or _from_oidc_env(env)
        if found is not None:
            return (found,), ()
    name = profile or env.get(ENV_PROFILE) or None
    tried = [] if profile else [f"{ENV_KEY_ID}/{ENV_KEY_SECRET}"]
    if env.get(ENV_CLI_PROFILE_DISABLED, "").lower() != "true":
        cli_file = home / ".aliyun" / "config.json"
        tried.append(str(cli_file))
        found = _from_cli_file(cli_file, name)
        if found is not None:
            return (found,), tuple(tried)
    ini_file = Path(env.get(ENV_CREDENTIALS_FILE) or home / ".alibabacloud" / "credentials.ini")
    tried.append(str(ini_file))
    found = _from_ini(ini_file, name)
    if found is not None:
        return (found,), tuple(tried)
    if name:
        # a profile asked for by name (--profile, ALIBABA_CLOUD_PROFILE) is in one of the two
        # files, or it is an error: never a silent step to the machine's own identity
        given = "--profile" if profile else ENV_PROFILE
        raise NotFound(f"no profile {name!r} ({given}) found; looked in: {', '.join(tried)}")
    machine: list[Recipe] = []
    if profile is None:
        if env.get(ENV_ECS_DISABLED, "").lower() != "true":
            tried.append("ECS instance metadata")
            role = env.get(ENV_ECS_ROLE, "").strip() or None
            imdsv1_off = env.get(ENV_IMDSV1_DISABLED, "").lower() == "true"
            origin = Origin("EcsRamRole", "ECS instance metadata")
            machine.append(EcsRole(origin, role, imdsv1_off, probe=True))
        uri = env.get(ENV_CREDENTIALS_URI, "").strip()
        if uri:
            tried.append(ENV_CREDENTIALS_URI)
            machine.append(uri_recipe(uri))
    if machine:
        return tuple(machine), tuple(tried)
    raise NotFound(f"no credentials found; looked in: {', '.join(tried)}")


def default_profile(profile: str | None, *, environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The profile a run's default identity is taken from by name, as `find` takes it:
    `profile` (--profile), else ALIBABA_CLOUD_PROFILE unless the environment holds a key of its
    own (which comes first); None when no name decides. The flag is true when the name came
    from ALIBABA_CLOUD_PROFILE (journals made before it was recorded hold no name for it)."""
    if profile:
        return profile, False
    named = environ.get(ENV_PROFILE, "").strip()
    if not named:
        return None, False
    try:
        if _from_env(environ) or _from_oidc_env(environ):
            return None, False
    except CredentialsError:  # half a key: resolving the credentials says so
        return None, False
    return named, True


# --- the environment --------------------------------------------------------------------------


def _from_env(env: Mapping[str, str]) -> Static | None:
    key_id = env.get(ENV_KEY_ID, "").strip()
    secret = env.get(ENV_KEY_SECRET, "").strip()
    token = env.get(ENV_TOKEN, "").strip() or None
    if not key_id or not secret:
        if key_id or secret or token:  # half a key: the next source may be another account
            given = [n for n, v in ((ENV_KEY_ID, key_id), (ENV_KEY_SECRET, secret)) if v]
            given += [ENV_TOKEN] if token else []
            lacking = ENV_KEY_SECRET if key_id else ENV_KEY_ID
            raise CredentialsError(
                f"the environment sets {' and '.join(given)} but not {lacking}:"
                " set both, or unset them to take credentials from elsewhere"
            )
        return None
    mode = "StsToken" if token else "AK"
    credentials = Credentials(key_id, secret, token, "environment")
    return Static(Origin(mode, "the environment"), credentials)


def _from_oidc_env(env: Mapping[str, str]) -> OidcRole | None:
    names = (ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE)
    role_arn, provider_arn, token_file = (env.get(n, "").strip() for n in names)
    if not (role_arn and provider_arn and token_file):
        if provider_arn or token_file:  # OIDC meant (the role ARN alone is not), but broken
            have = (role_arn, provider_arn, token_file)
            lacking = [n for n, v in zip(names, have, strict=True) if not v]
            raise CredentialsError(
                f"OIDC from the environment lacks {' and '.join(lacking)}: set all three of"
                f" {', '.join(names)}, or none"
            )
        return None
    origin = Origin("OIDC", f"{ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, {ENV_OIDC_TOKEN_FILE}")
    values = {
        "role_arn": role_arn,
        "session_name": env.get(ENV_ROLE_SESSION_NAME, ""),
        "sts_region": env.get(ENV_STS_REGION, ""),
        "vpc": env.get(ENV_VPC, ""),
    }
    return OidcRole(origin, role_of(values, origin), provider_arn, Path(token_file))


# --- ~/.aliyun/config.json ----------------------------------------------------------------------


def _from_cli_file(path: Path, name: str | None) -> Recipe | None:
    if not path.is_file():
        return None
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CredentialsError(f"{path}: not readable JSON ({type(error).__name__})") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"{path}: expected a JSON object")
    profiles = document.get("profiles") or []
    if not isinstance(profiles, list):
        raise CredentialsError(f"{path}: 'profiles' is not a list")
    by_name = {
        p["name"]: p for p in profiles if isinstance(p, dict) and isinstance(p.get("name"), str)
    }
    if name:  # asked for by name: not here, credentials.ini may have it (find says if not)
        return _cli_profile(path, by_name, name, ()) if name in by_name else None
    current = document.get("current")
    if current:
        if not isinstance(current, str) or current not in by_name:
            # the file says which profile is in use and it is missing: not guessed past
            raise CredentialsError(f"{path}: its current profile {current!r} is not in the file")
        return _cli_profile(path, by_name, current, ())
    return _cli_profile(path, by_name, "default", ()) if "default" in by_name else None


def _cli_profile(
    path: Path, by_name: Mapping[str, Any], name: str, chain: tuple[str, ...]
) -> Recipe:
    profile = by_name[name]
    mode = str(profile.get("mode") or "AK")
    origin = Origin(mode, f"{path} profile {name!r}")
    values = {k: "" if v is None else str(v) for k, v in profile.items()}
    if mode in ("AK", "StsToken"):
        return Static(origin, key_of(values, origin, token=mode == "StsToken"))
    if mode == "RamRoleArn":
        base = Static(Origin("AK", origin.where), key_of(values, origin, token=False))
        return AssumeRole(origin, base, role_of(_cli_role(values), origin))
    if mode == "ChainableRamRoleArn":
        source = values.get("source_profile", "")
        if not source or source not in by_name:
            raise CredentialsError(f"{origin}: source_profile {source!r} is not in the file")
        if source in (*chain, name) or len(chain) >= MAX_CHAIN:
            raise CredentialsError(f"{origin}: source_profile {source!r} makes a loop")
        chained = _cli_profile(path, by_name, source, (*chain, name))
        return AssumeRole(origin, chained, role_of(_cli_role(values), origin))
    if mode == "EcsRamRole":
        return EcsRole(origin, values.get("ram_role_name") or None)
    if mode == "OIDC":
        session = values.get("role_session_name", "")
        role = role_of({**_cli_role(values), "session_name": session}, origin)
        provider = values.get("oidc_provider_arn", "")
        return oidc_of(origin, role, provider, values.get("oidc_token_file", ""))
    if mode == "External":
        command = values.get("process_command", "").strip()
        if not command:
            raise CredentialsError(f"{origin} has no process_command")
        return External(origin, command)
    if mode == "CredentialsURI":
        uri = values.get("credentials_uri", "").strip()
        if not uri:
            raise CredentialsError(f"{origin} has no credentials_uri")
        found = uri_recipe(uri, f"{origin.where}: credentials_uri")
        return replace(found, origin=Origin(mode, f"{found.origin.where} ({origin.where})"))
    if mode == "CloudSSO":
        return _cloud_sso(values, origin)
    if mode == "OAuth":
        return _oauth(values, origin)
    raise CredentialsError(f"{origin}: mode {mode!r} is unknown")


OAUTH_MARGIN = 300.0  # seconds a cached OAuth key must have left to start a run with


def _oauth(values: Mapping[str, str], origin: Origin) -> Static:
    """The key aliyun-cli keeps for an OAuth profile, while it is valid. runner never renews the
    sign-in itself: that would rewrite aliyun-cli's own file under it."""
    key = key_of(values, origin, token=True)
    try:
        expires = float(values.get("sts_expiration", "") or "nan")
    except ValueError:
        expires = math.nan
    left = expires - time.time()
    if not left > OAUTH_MARGIN:  # NaN too: no expiry known
        raise CredentialsError(
            f"{origin}: the key aliyun-cli keeps for it has expired or expires within"
            f" {OAUTH_MARGIN:.0f} s; run any aliyun command with this profile to renew it"
        )
    return Static(origin, replace(key, expiration=expires))


def _cli_role(values: Mapping[str, str]) -> dict[str, str]:
    return {
        "role_arn": values.get("ram_role_arn", ""),
        "session_name": values.get("ram_session_name", ""),
        "duration": values.get("expired_seconds", ""),
        "policy": values.get("policy", ""),
        "external_id": values.get("external_id", ""),
        "sts_region": values.get("sts_region", ""),
        "vpc": values.get("enable_vpc", ""),
    }


def _cloud_sso(values: Mapping[str, str], origin: Origin) -> CloudSso:
    names = ("cloud_sso_sign_in_url", "cloud_sso_account_id", "cloud_sso_access_config")
    url, account, config = (values.get(n, "").strip() for n in names)
    token = values.get("access_token", "").strip()
    if not (url and account and config and token):
        raise CredentialsError(
            f"{origin} lacks its sign-in URL, account id, access configuration or access token"
        )
    if urlsplit(url).scheme != "https":
        raise CredentialsError(f"{origin}: cloud_sso_sign_in_url must be https")
    try:
        expires = float(values.get("cloud_sso_access_token_expire") or 0)
    except ValueError:
        raise CredentialsError(f"{origin}: cloud_sso_access_token_expire is not a number") from None
    return CloudSso(origin, url.rstrip("/"), account, config, token, expires)


# --- ~/.alibabacloud/credentials.ini ----------------------------------------------------------


def _from_ini(path: Path, name: str | None) -> Recipe | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error) as error:
        raise CredentialsError(
            f"{path}: not a readable INI file ({type(error).__name__})"
        ) from None
    section = name or "default"
    if not parser.has_section(section):
        return None  # a profile asked for by name and found nowhere: find says so
    # as the SDK reads them: a '#' starts a comment anywhere in a value
    values = {k: v.split("#", 1)[0].strip() for k, v in parser[section].items()}
    kind = values.get("type", "access_key")
    origin = Origin(kind, f"{path} [{section}]")
    if kind == "access_key":
        return Static(origin, key_of(values, origin, token=False))
    if kind == "ram_role_arn":
        base = Static(Origin("access_key", origin.where), key_of(values, origin, token=False))
        return AssumeRole(origin, base, role_of(values, origin))
    if kind == "oidc_role_arn":
        role = role_of(values, origin)
        provider = values.get("oidc_provider_arn", "")
        return oidc_of(origin, role, provider, values.get("oidc_token_file_path", ""))
    if kind == "ecs_ram_role":
        return EcsRole(origin, values.get("role_name") or None)
    raise CredentialsError(
        f"{origin.where} is of type {kind!r}; runner reads types access_key, ram_role_arn,"
        " oidc_role_arn and ecs_ram_role"
    )
