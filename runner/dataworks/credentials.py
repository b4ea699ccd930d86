"""Credentials: the access key pair and an optional STS token. The secret is never printed.

Found the way Alibaba Cloud's own tools look for them, first match wins:

1. the environment: ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN;
2. the aliyun-cli profile file `~/.aliyun/config.json` (profile: `--profile`, else
   ALIBABA_CLOUD_PROFILE, else the file's `current`); modes AK and StsToken;
3. the credentials file `~/.alibabacloud/credentials.ini` (or ALIBABA_CLOUD_CREDENTIALS_FILE),
   section `--profile` / ALIBABA_CLOUD_PROFILE / `default`; type access_key.

An explicit `--profile` skips the environment. Modes that need a network call to get a key (RAM
role, ECS metadata, OIDC) are refused with a clear message rather than half-supported.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_CLI_PROFILE_DISABLED = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
ENV_CREDENTIALS_FILE = "ALIBABA_CLOUD_CREDENTIALS_FILE"


class CredentialsError(Exception):
    """No usable credentials were found (the message never holds a secret)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = "static"

    @property
    def provider(self) -> str:
        """The value the official SDK sends as x-acs-credentials-provider."""
        return "static_sts" if self.security_token else "static_ak"


def resolve(
    profile: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Credentials:
    """The first credentials the chain finds; CredentialsError naming what was tried."""
    env = os.environ if environ is None else environ
    base = home if home is not None else Path.home()
    if profile is None:
        found = _from_env(env)
        if found is not None:
            return found
    name = profile or env.get(ENV_PROFILE) or None
    tried = [] if profile else [f"{ENV_KEY_ID}/{ENV_KEY_SECRET}"]
    if env.get(ENV_CLI_PROFILE_DISABLED, "").lower() != "true":
        cli_file = base / ".aliyun" / "config.json"
        tried.append(str(cli_file))
        found = _from_cli_profile(cli_file, name)
        if found is not None:
            return found
    ini_file = Path(env.get(ENV_CREDENTIALS_FILE) or base / ".alibabacloud" / "credentials.ini")
    tried.append(str(ini_file))
    found = _from_ini(ini_file, name)
    if found is not None:
        return found
    wanted = f"profile {name!r}" if name else "credentials"
    raise CredentialsError(f"no {wanted} found; looked in: {', '.join(tried)}")


def _from_env(env: Mapping[str, str]) -> Credentials | None:
    key_id = env.get(ENV_KEY_ID, "").strip()
    secret = env.get(ENV_KEY_SECRET, "").strip()
    if not key_id or not secret:
        return None
    token = env.get(ENV_TOKEN, "").strip() or None
    return Credentials(key_id, secret, token, source="environment")


def _from_cli_profile(path: Path, name: str | None) -> Credentials | None:
    if not path.is_file():
        return None
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CredentialsError(f"{path}: not readable JSON ({type(error).__name__})") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"{path}: expected a JSON object")
    wanted = name or document.get("current") or "default"
    profiles = document.get("profiles") or []
    chosen = next((p for p in profiles if isinstance(p, dict) and p.get("name") == wanted), None)
    if chosen is None:
        if name:  # asked for by name: say it is missing rather than fall through silently
            raise CredentialsError(f"{path}: no profile named {wanted!r}")
        return None
    mode = chosen.get("mode", "AK")
    where = f"{path} profile {wanted!r}"
    if mode not in ("AK", "StsToken"):
        raise CredentialsError(
            f"{where} uses mode {mode!r}; runner reads AK and StsToken profiles"
            f" (or set {ENV_KEY_ID}/{ENV_KEY_SECRET})"
        )
    key_id = str(chosen.get("access_key_id") or "")
    secret = str(chosen.get("access_key_secret") or "")
    token = str(chosen.get("sts_token") or "") or None
    if not key_id or not secret or (mode == "StsToken" and not token):
        raise CredentialsError(f"{where} lacks its access key id, secret or STS token")
    return Credentials(key_id, secret, token if mode == "StsToken" else None, source=where)


def _from_ini(path: Path, name: str | None) -> Credentials | None:
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
        if name:
            raise CredentialsError(f"{path}: no section [{section}]")
        return None
    values = parser[section]
    where = f"{path} [{section}]"
    kind = values.get("type", "access_key")
    if kind != "access_key":
        raise CredentialsError(f"{where} is of type {kind!r}; runner reads type access_key")
    key_id = values.get("access_key_id", "").strip()
    secret = values.get("access_key_secret", "").strip()
    if not key_id or not secret:
        raise CredentialsError(f"{where} lacks access_key_id or access_key_secret")
    return Credentials(key_id, secret, source=where)
