"""Credentials: the access key pair, an optional STS token and its expiration. The secret is
never printed.

The chain that finds them is `runner.dataworks.sources` (where to look, no network) and
`runner.dataworks.identity` (keys fetched and kept fresh); `resolve` here is its static part.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_CLI_PROFILE_DISABLED = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
ENV_CREDENTIALS_FILE = "ALIBABA_CLOUD_CREDENTIALS_FILE"


class CredentialsError(Exception):
    """No usable credentials were found (the message never holds a secret)."""


class NotFound(CredentialsError):
    """None of the places the chain looks at holds credentials."""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = "static"
    # epoch seconds after which the key is refused; None: it does not expire (a long-term key)
    expiration: float | None = None

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
    """The long-term or static STS key the chain finds first; CredentialsError naming what was
    tried, or naming the mode when the source first found needs a network call to give a key
    (those are resolved by `runner.dataworks.identity.KeyRing`)."""
    from runner.dataworks import sources  # the chain imports this module's types

    env = os.environ if environ is None else environ
    base = home if home is not None else Path.home()
    recipes, tried = sources.find(profile, environ=env, home=base)
    first = recipes[0]
    if isinstance(first, sources.Static):
        return first.credentials
    looked = f" (looked in: {', '.join(tried)})" if tried else ""
    raise CredentialsError(
        f"{first.origin} gives temporary keys over the network{looked}; they are fetched by"
        " runner.dataworks.identity.KeyRing"
    )
