"""The checks every credentials source shares: a key, a role, OIDC settings and a credentials
URI read from a source's values, each refused with its mode and source named."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from runner.dataworks.credentials import Credentials, CredentialsError
from runner.dataworks.recipes import DEFAULT_DURATION, CredentialsUri, OidcRole, Origin, Role

ENV_CREDENTIALS_URI = "ALIBABA_CLOUD_CREDENTIALS_URI"
MIN_DURATION = 900
SESSION_NAME = re.compile(r"[A-Za-z0-9.@_-]{2,64}")


def uri_recipe(uri: str, given: str = ENV_CREDENTIALS_URI) -> CredentialsUri:
    """A credentials URI's recipe; shown by scheme, host and path only (a query or user info
    may hold a secret). `given`: where it was set, for the error."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CredentialsError(f"{given} is not an http(s) URL with a host")
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return CredentialsUri(Origin("CredentialsURI", shown), uri)


def key_of(values: Mapping[str, str], origin: Origin, *, token: bool) -> Credentials:
    key_id = values.get("access_key_id", "").strip()
    secret = values.get("access_key_secret", "").strip()
    sts_token = values.get("sts_token", "").strip() if token else ""
    if not key_id or not secret or (token and not sts_token):
        what = "access key id, secret or STS token" if token else "access key id or secret"
        raise CredentialsError(f"{origin} lacks its {what}")
    return Credentials(key_id, secret, sts_token or None, source=origin.where)


def role_of(values: Mapping[str, str], origin: Origin) -> Role:
    role_arn = values.get("role_arn", "").strip()
    if not role_arn:
        raise CredentialsError(f"{origin} names no role ARN")
    session = values.get("session_name", values.get("role_session_name", "")).strip() or None
    if session is not None and not SESSION_NAME.fullmatch(session):
        raise CredentialsError(
            f"{origin}: the role session name must be 2 to 64 of A-Z a-z 0-9 . @ _ -"
        )
    raw = values.get("duration", "").strip()
    try:
        duration = int(float(raw)) if raw else 0
    except ValueError:
        raise CredentialsError(f"{origin}: the session duration {raw!r} is not a number") from None
    if duration == 0:
        duration = DEFAULT_DURATION
    if duration < MIN_DURATION:
        raise CredentialsError(f"{origin}: a role session lasts at least {MIN_DURATION} s")
    return Role(
        role_arn=role_arn,
        session_name=session,
        duration=duration,
        policy=values.get("policy", "").strip() or None,
        external_id=values.get("external_id", "").strip() or None,
        sts_region=values.get("sts_region", "").strip() or None,
        vpc=values.get("vpc", "").strip().lower() == "true",
    )


def oidc_of(origin: Origin, role: Role, provider_arn: str, token_file: str) -> OidcRole:
    if not provider_arn.strip() or not token_file.strip():
        raise CredentialsError(f"{origin} lacks the OIDC provider ARN or the token file")
    return OidcRole(origin, role, provider_arn.strip(), Path(token_file.strip()))
