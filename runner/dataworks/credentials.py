"""Credentials: the access key pair and an optional STS token. The secret is never printed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"


class CredentialsError(Exception):
    """No usable credentials were found."""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    @property
    def provider(self) -> str:
        """The value the official SDK sends as x-acs-credentials-provider."""
        return "static_sts" if self.security_token else "static_ak"


def from_environment(environ: Mapping[str, str] | None = None) -> Credentials:
    """Read the access key from the standard Alibaba Cloud environment variables."""
    env = os.environ if environ is None else environ
    key_id = env.get(ENV_KEY_ID, "").strip()
    secret = env.get(ENV_KEY_SECRET, "").strip()
    if not key_id or not secret:
        raise CredentialsError(
            f"no credentials: set {ENV_KEY_ID} and {ENV_KEY_SECRET}"
            f" (and {ENV_TOKEN} for an STS token)"
        )
    token = env.get(ENV_TOKEN, "").strip() or None
    return Credentials(key_id, secret, token)
