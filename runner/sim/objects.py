"""The simulator's OSS side, pure: upload grants (AuthorizeFileUpload's signed POST policies),
their check when a form arrives, and the objects stored.

A grant names a bucket `runner-sim-<region>`, the endpoint the simulator was reached at, a key
unique to the grant (`import/<8-digit counter>-<16 hex>.zip`), the simulator's OSS key id, and a
policy that OSS PostObject checks: `{"expiration": ISO-8601 UTC, "conditions": [{"bucket": B},
["eq", "$key", K], ["content-length-range", 1, MAX]]}`, base64-encoded and signed
base64(HMAC-SHA1(secret, EncodedPolicy)). The secret is derived from the seed and never shown.
A post reaches the OSS handler when its Host is `<bucket>.<anything>` for a bucket already granted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.dataworks.upload import UploadGrant
from runner.sim.packages import PackageManifest
from runner.sim.params import SimError

BUCKET_PREFIX = "runner-sim-"
DEFAULT_MAX_SIZE = 5 * 1024**3  # bytes: what OSS takes in one PostObject
PACKAGE_FILE = "http://{Bucket}.{Endpoint}/{ObjectKey}"
_EXPIRATION = "%Y-%m-%dT%H:%M:%S.000Z"
_REGION_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")


@dataclass(frozen=True, slots=True)
class Policy:
    """A checked policy: the bucket and key it allows, until when, and the sizes it accepts."""

    bucket: str
    key: str
    expires: float  # epoch seconds
    min_size: int
    max_size: int


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What the simulator keeps of an upload: never its bytes."""

    bucket: str
    endpoint: str  # the host[:port] it was posted to, after `<bucket>.`
    key: str
    size: int
    sha256: str
    md5: str  # hex: the ETag
    manifest: PackageManifest | None  # when the object is a package the simulator made
    stored_at: float


def _refused(reason: str) -> SimError:
    return SimError(403, "AccessDenied", f"Invalid according to Policy: {reason}")


def valid_region(region: str) -> bool:
    return 0 < len(region) <= 40 and set(region) <= _REGION_CHARS


@dataclass(slots=True)
class ObjectStore:
    """Grants made and objects stored, by (bucket, key)."""

    secret: bytes = field(default=b"runner-sim-oss-0", repr=False)
    access_key_id: str = "LTAIsimOss0"
    policy_ttl: float = 3600.0  # seconds a grant's policy is accepted
    max_size: int = DEFAULT_MAX_SIZE
    rng: random.Random = field(default_factory=lambda: random.Random("oss-0"), repr=False)
    buckets: set[str] = field(default_factory=set)
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    granted: int = 0

    @classmethod
    def for_seed(
        cls, seed: int, *, policy_ttl: float = 3600.0, max_size: int = DEFAULT_MAX_SIZE
    ) -> ObjectStore:
        """The store of a simulator made from `seed`: its OSS key and secret come from it."""
        digest = hashlib.sha256(f"runner-sim-oss-{seed}".encode()).digest()
        key_id = "LTAIsimOss" + hashlib.sha256(digest).hexdigest()[:14]
        return cls(digest, key_id, policy_ttl, max_size, random.Random(f"oss-{seed}"))

    # -- grants ----------------------------------------------------------------------------

    def grant(self, region: str, endpoint: str, now: float, request_id: str) -> UploadGrant:
        """A new grant: a fresh key in the region's bucket, posted to at `endpoint`."""
        bucket = BUCKET_PREFIX + region
        self.granted += 1
        key = f"import/{self.granted:08d}-{self.rng.getrandbits(64):016x}.zip"
        expires = datetime.fromtimestamp(now + self.policy_ttl, UTC).strftime(_EXPIRATION)
        policy = {
            "expiration": expires,
            "conditions": [
                {"bucket": bucket},
                ["eq", "$key", key],
                ["content-length-range", 1, self.max_size],
            ],
        }
        encoded = base64.b64encode(json.dumps(policy, separators=(",", ":")).encode()).decode()
        self.buckets.add(bucket)
        return UploadGrant(
            bucket=bucket,
            endpoint=endpoint,
            object_key=key,
            access_key_id=self.access_key_id,
            encoded_policy=encoded,
            signature=self.sign(encoded),
            use_accelerate=False,
            request_id=request_id,
        )

    def sign(self, encoded_policy: str) -> str:
        message = encoded_policy.encode("utf-8", "surrogatepass")  # any text a form may carry
        digest = hmac.new(self.secret, message, hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def bucket_of(self, host: str) -> str | None:
        """The granted bucket a Host header names (`<bucket>.<endpoint>`), else None."""
        bucket, dot, endpoint = host.partition(".")
        return bucket if dot and endpoint and bucket in self.buckets else None

    # -- the form's check ------------------------------------------------------------------

    def check(self, bucket: str, fields: Mapping[str, str], now: float) -> Policy:
        """The policy of a PostObject form to `bucket`, checked as OSS does: key id, signature,
        expiry, bucket and key; SimError otherwise. The size is checked once the file is in."""
        for name in ("key", "OSSAccessKeyId", "policy", "Signature"):
            if not fields.get(name):
                raise SimError(400, "InvalidArgument", f"The form field {name} is missing.")
        if fields["OSSAccessKeyId"] != self.access_key_id:
            raise SimError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            )
        good = self.sign(fields["policy"])
        given = fields["Signature"].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(good.encode(), given):
            raise SimError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        policy = _decode(fields["policy"])
        if now > policy.expires:
            raise _refused("Policy expired.")
        if policy.bucket != bucket:
            raise _refused(f'Policy Condition failed: ["eq", "$bucket", "{policy.bucket}"]')
        if policy.key != fields["key"]:
            raise _refused(f'Policy Condition failed: ["eq", "$key", "{policy.key}"]')
        return policy

    # -- objects ---------------------------------------------------------------------------

    def put(self, stored: StoredObject) -> None:
        self.objects[(stored.bucket, stored.key)] = stored

    def resolve(self, package_file: str) -> StoredObject:
        """The stored object a PackageFile names, written exactly as the SDK writes it."""
        scheme, _, rest = package_file.partition("://")
        host, _, key = rest.partition("/")
        bucket, _, endpoint = host.partition(".")
        stored = self.objects.get((bucket, key))
        if scheme != "http" or stored is None or stored.endpoint != endpoint:
            raise SimError(
                400,
                "Invalid.Param",
                f"The PackageFile '{package_file}' does not name an uploaded object"
                f" ({PACKAGE_FILE}).",
            )
        return stored


def _decode(encoded: str) -> Policy:
    """A policy signed by us (so well formed); SimError(400) if it is not one after all."""
    try:
        data: Any = json.loads(base64.b64decode(encoded, validate=True))
        expires = datetime.strptime(data["expiration"], _EXPIRATION).replace(tzinfo=UTC)
        conditions = data["conditions"]
        bucket = next(c["bucket"] for c in conditions if isinstance(c, dict))
        lists = [c for c in conditions if isinstance(c, list)]
        key = next(c[2] for c in lists if c[:2] == ["eq", "$key"])
        low, high = next(c[1:] for c in lists if c[:1] == ["content-length-range"])
        return Policy(str(bucket), str(key), expires.timestamp(), int(low), int(high))
    except (
        binascii.Error,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        StopIteration,
        OverflowError,
        RecursionError,
    ):
        raise SimError(400, "InvalidPolicyDocument", "The policy is not valid.") from None
