"""The simulator's OpenPlatform (version 2019-12-19): AuthorizeFileUpload, the grant to post an
import package to the simulator's OSS (`runner.sim.objects`, `runner.sim.oss`).

It is routed by its version, like STS; the app checks its signature, throttles it per key and
draws its faults as for a DataWorks read. It takes `Product=dataworks-public` and `RegionId` and
answers at the top level, as the official SDK's AuthorizeFileUploadResponseBody reads it:
RequestId, Bucket, Endpoint (the simulator's own address, as the request reached it), ObjectKey,
AccessKeyId, EncodedPolicy, Signature, UseAccelerate.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.dataworks.actions import AUTHORIZE_UPLOAD, OPENPLATFORM_VERSION
from runner.sim.objects import ObjectStore, valid_region
from runner.sim.params import SimError, invalid, parse_text
from runner.sim.service import Answer, SimStats, error

__all__ = ["OPENPLATFORM_VERSION", "PRODUCT", "OpenPlatformService"]

PRODUCT = "dataworks-public"
NOT_FOUND = "Specified api is not found, please check your url and method."


class OpenPlatformService:
    """AuthorizeFileUpload on the simulator's object store, counted in its stats."""

    def __init__(self, store: ObjectStore, stats: SimStats) -> None:
        self._store = store
        self._stats = stats

    def handle(
        self, action: str, params: Mapping[str, str], now: float, rid: str, host: str
    ) -> Answer:
        """Answer `action`; `host` is where the request reached the simulator (the grant's
        Endpoint)."""
        if action != AUTHORIZE_UPLOAD.name:
            return error(rid, host, 404, "InvalidApi.NotFound", NOT_FOUND)
        try:
            product = parse_text(params, "Product")
            if product != PRODUCT:
                raise invalid("Product", f"'{product}' is not {PRODUCT}.")
            region = parse_text(params, "RegionId")
            if not valid_region(region):
                raise invalid("RegionId", f"'{region}' is not a region id.")
        except SimError as exc:
            return error(rid, host, exc.status, exc.code, exc.message)
        grant = self._store.grant(region, host, now, rid)
        self._stats.grants_issued += 1
        return Answer(
            200,
            {
                "RequestId": rid,
                "Bucket": grant.bucket,
                "Endpoint": grant.endpoint,
                "ObjectKey": grant.object_key,
                "AccessKeyId": grant.access_key_id,
                "EncodedPolicy": grant.encoded_policy,
                "Signature": grant.signature,
                "UseAccelerate": grant.use_accelerate,
            },
        )
