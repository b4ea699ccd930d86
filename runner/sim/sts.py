"""The simulator's STS (AssumeRole, AssumeRoleWithOIDC; version 2015-04-01) and credentials URI.

Every key handed out is minted here and accepted by the signature check until it expires,
`--sts-ttl` seconds later (AssumeRole: its DurationSeconds when shorter); with `--revoke-rate P`
a share P of them is revoked at a random point of their life. A request signed with a key past
either is refused 400 `InvalidSecurityToken.Expired` (a choice: the service documents no status).
Expirations are whole seconds, as `Expiration` shows them, and the check uses that same instant.
A minted key counts against the throttle of the account that minted it.
"""

from __future__ import annotations

import base64
import json
import math
import random
import string
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.dataworks import signing
from runner.sim.auth import AuthFailure, IncomingRequest, Key
from runner.sim.faults import Faults
from runner.sim.service import Answer, SimStats, access_key_of, error, params_of

STS_VERSION = "2015-04-01"
CREDENTIALS_PATH = "/_sim/credentials"
EXPIRED_CODE = "InvalidSecurityToken.Expired"
EXPIRED_MESSAGE = "Specified SecurityToken is expired."
NOT_FOUND = "Specified api is not found, please check your url and method."
MAX_KEPT = 100_000  # minted keys remembered (the oldest are forgotten first)
MIN_DURATION, MAX_DURATION = 900, 43_200
MAX_POLICY = 2048
URI_ACCOUNT = "credentials-uri"

Checker = Callable[[IncomingRequest], AuthFailure | None]


@dataclass(slots=True)
class Minted:
    key: Key
    expires: float  # epoch seconds, whole: what Expiration says
    ends: float  # when it is refused: its expiry, or earlier when revoked
    account: str  # whose throttle it counts against


def _role_arn(value: str) -> tuple[str, str] | None:
    """(account id, role name) of `acs:ram::<digits>:role/<name>`."""
    prefix, _, rest = value.partition("acs:ram::")
    account, _, role = rest.partition(":role/")
    if prefix or not account.isdigit() or not role or "/" in role:
        return None
    if not all(c.isalnum() or c in ".@_-" for c in role) or len(role) > 64:
        return None
    return account, role


class Issuer:
    """Mints keys and says when one may no longer sign."""

    def __init__(self, faults: Faults, rng: random.Random, stats: SimStats) -> None:
        self._ttl = faults.sts_ttl
        self._revoke_rate = faults.revoke_rate
        self._rng = rng
        self._stats = stats
        self._minted: OrderedDict[str, Minted] = OrderedDict()
        self.keys: dict[str, Key] = {}  # what the signature check accepts besides --key

    def mint(self, now: float, account: str, lifetime: float | None = None) -> Minted:
        life = self._ttl if lifetime is None else min(lifetime, self._ttl)
        expires = float(math.floor(now + life))
        ends = expires
        if self._revoke_rate > 0 and self._rng.random() < self._revoke_rate:
            ends = now + self._rng.uniform(0.2, 0.8) * (expires - now)
            self._stats.sts["keys_revoked"] += 1
        alphabet = string.ascii_letters + string.digits
        key_id = "STS." + "".join(self._rng.choices(alphabet, k=24))
        secret = "".join(self._rng.choices(alphabet, k=30))
        token = base64.b64encode(self._rng.randbytes(180)).decode()  # holds '+', '/', '='
        minted = Minted(Key(key_id, secret, token), expires, ends, account)
        self._minted[key_id] = minted
        self.keys[key_id] = minted.key
        while len(self._minted) > MAX_KEPT:
            old, _ = self._minted.popitem(last=False)
            self.keys.pop(old, None)
        self._stats.sts["keys_minted"] += 1
        return minted

    def account_of(self, key_id: str) -> str:
        minted = self._minted.get(key_id)
        return key_id if minted is None else minted.account

    def refusal(self, request: IncomingRequest, now: float) -> AuthFailure | None:
        """The answer to a request signed with a minted key that may no longer sign."""
        key_id = access_key_of(request.headers, params_of(request.query, request.headers, b""))
        minted = self._minted.get(key_id)
        if minted is None or now < minted.ends:
            return None
        self._stats.sts["expired_refused"] += 1
        return AuthFailure(400, EXPIRED_CODE, EXPIRED_MESSAGE)

    def guard(self, checker: Checker, clock: Callable[[], float]) -> Checker:
        """`checker`, refusing first the minted keys past their end."""

        def check(request: IncomingRequest) -> AuthFailure | None:
            return self.refusal(request, clock()) or checker(request)

        return check


class StsService:
    """The STS actions and the credentials-URI answer, pure of HTTP."""

    def __init__(
        self, issuer: Issuer, stats: SimStats, checker: Checker, clock: Callable[[], float]
    ) -> None:
        self._issuer = issuer
        self._stats = stats
        self._checker = checker
        self._clock = clock

    def handle(self, request: IncomingRequest, action: str, rid: str, host: str) -> Answer:
        if action == "AssumeRole":
            failure = self._checker(request)  # signed by a --key, or by a minted key (chaining)
            if failure is not None:
                self._stats.auth_failures += 1
                return error(rid, host, failure.status, failure.code, failure.message)
        elif action != "AssumeRoleWithOIDC":  # called anonymously
            return error(rid, host, 404, "InvalidApi.NotFound", NOT_FOUND)
        params = params_of(request.query, request.headers, request.body)
        problem = _check(action, params)
        if problem is not None:
            return error(rid, host, 400, problem[0], problem[1])
        role_arn, session = params["RoleArn"], params["RoleSessionName"]
        account, role = _role_arn(role_arn) or ("", "")
        duration = int(params.get("DurationSeconds") or 3600)
        self._stats.sts[_counter(action)] += 1
        minted = self._issuer.mint(self._clock(), account, float(duration))
        role_id = f"3{self._clock():.0f}"[:18]
        body: dict[str, Any] = {
            "RequestId": rid,
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{account}:role/{role}/{session}",
                "AssumedRoleId": f"{role_id}:{session}",
            },
            "Credentials": _credentials(minted),
        }
        if action == "AssumeRoleWithOIDC":
            body["OIDCTokenInfo"] = {
                "Subject": "system:serviceaccount:sim:runner",
                "Issuer": "https://oidc.sim.invalid",
                "ClientIds": "sts.aliyuncs.com",
            }
        return Answer(200, body)

    def credentials_uri(self) -> dict[str, Any]:
        """The body a credentials URI answers: a fresh key living --sts-ttl seconds."""
        now = self._clock()
        minted = self._issuer.mint(now, URI_ACCOUNT)
        self._stats.sts["credentials_uri"] += 1
        return {
            "Code": "Success",
            **_credentials(minted),
            "LastUpdated": _stamp(now),
        }


def _stamp(epoch: float) -> str:
    return signing.timestamp_of(datetime.fromtimestamp(epoch, UTC))


def _counter(action: str) -> str:
    return "assume_role" if action == "AssumeRole" else "assume_role_with_oidc"


def _credentials(minted: Minted) -> dict[str, str]:
    key = minted.key
    return {
        "AccessKeyId": key.access_key_id,
        "AccessKeySecret": key.access_key_secret,
        "SecurityToken": key.security_token or "",
        "Expiration": _stamp(minted.expires),
    }


def _check(action: str, params: Mapping[str, str]) -> tuple[str, str] | None:
    """The first problem of the parameters, as (code, message); None when they are fine."""
    if _role_arn(params.get("RoleArn", "")) is None:
        return "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed."
    session = params.get("RoleSessionName", "")
    if not (2 <= len(session) <= 64 and all(c.isalnum() or c in ".@_-" for c in session)):
        return "InvalidParameter.RoleSessionName", "RoleSessionName is wrongly formed."
    raw = params.get("DurationSeconds") or "3600"
    if not raw.isdigit() or not MIN_DURATION <= int(raw) <= MAX_DURATION:
        return "InvalidParameter.DurationSeconds", "DurationSeconds is out of 15min..12hr."
    policy = params.get("Policy")
    if policy is not None:
        try:
            valid = len(policy.encode()) <= MAX_POLICY and isinstance(json.loads(policy), dict)
        except ValueError:
            valid = False
        if not valid:
            return "InvalidParameter.PolicyGrammar", "The parameter Policy has not a valid grammar."
    if action == "AssumeRoleWithOIDC":
        if not params.get("OIDCProviderArn", "").startswith("acs:ram::"):
            return "InvalidParameter.OIDCProviderArn", "OIDCProviderArn is wrongly formed."
        if not params.get("OIDCToken", "").strip():
            return "InvalidParameter.OIDCToken", "The OIDC token is missing or empty."
    return None
