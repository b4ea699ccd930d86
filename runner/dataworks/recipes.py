"""What a credentials source is, as the chain finds it: a recipe for getting its keys, with
the mode and place it was configured (`Origin`) for messages. Pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.dataworks.credentials import Credentials

DEFAULT_DURATION = 3600  # seconds of a role session when the profile names none (as the SDK)


@dataclass(frozen=True, slots=True)
class Origin:
    """What a key comes from, for messages and logs: the mode and where it was configured."""

    mode: str
    where: str

    def __str__(self) -> str:
        return f"{self.mode} from {self.where}"


@dataclass(frozen=True, slots=True)
class Static:
    origin: Origin
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class Role:
    """An STS role session: what AssumeRole and AssumeRoleWithOIDC are asked for."""

    role_arn: str
    session_name: str | None = None  # None: one is made per run
    duration: int = DEFAULT_DURATION
    policy: str | None = None
    external_id: str | None = None
    sts_region: str | None = None
    vpc: bool = False


@dataclass(frozen=True, slots=True)
class AssumeRole:
    origin: Origin
    base: Recipe  # the identity that signs AssumeRole
    role: Role


@dataclass(frozen=True, slots=True)
class OidcRole:
    origin: Origin
    role: Role
    provider_arn: str
    token_file: Path


@dataclass(frozen=True, slots=True)
class EcsRole:
    origin: Origin
    role_name: str | None  # None: asked of the metadata service
    imdsv1_disabled: bool | None = None  # None: as ALIBABA_CLOUD_IMDSV1_DISABLED says
    probe: bool = False  # the chain's guess (not configured): off ECS, the chain goes on


@dataclass(frozen=True, slots=True)
class CredentialsUri:
    origin: Origin
    uri: str = field(repr=False)  # may carry a token in its query


@dataclass(frozen=True, slots=True)
class External:
    origin: Origin
    command: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CloudSso:
    origin: Origin
    sign_in_url: str
    account_id: str
    access_config: str
    access_token: str = field(repr=False)
    token_expires: float = 0.0  # epoch seconds


Recipe = Static | AssumeRole | OidcRole | EcsRole | CredentialsUri | External | CloudSso


def account_of(recipe: Recipe) -> str:
    """A label for the rate-limit buckets that stays when temporary keys rotate: the key id of
    a long-term key, the role ARN of a role session, the place of the machine's sources."""
    match recipe:
        case Static(credentials=creds):
            return creds.access_key_id
        case AssumeRole(role=role) | OidcRole(role=role):
            return role.role_arn
        case EcsRole(role_name=role_name):
            return f"ecs-ram-role:{role_name or '(instance)'}"
        case CredentialsUri(origin=origin):
            return f"credentials-uri:{origin.where}"
        case External(origin=origin):
            return f"external:{origin.where}"
        case CloudSso(account_id=account_id, access_config=config):
            return f"cloudsso:{account_id}/{config}"
    raise AssertionError(f"unknown recipe {recipe!r}")  # pragma: no cover
