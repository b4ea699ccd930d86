"""The API actions the runner calls: one table shared by the client, the sender and the simulator.

A row names the action, the API it belongs to and whether it changes state. The sender takes a
slot in the bucket the row's access names; the client treats a lost answer to a write as an
unknown outcome; the simulator routes, counts and injects faults by the same rows. Adding an
action is one row here, one client method and one simulator handler.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.models import Access

DATAWORKS_VERSION = "2020-05-18"
OPENPLATFORM_VERSION = "2019-12-19"
OPENPLATFORM_HOST = "openplatform.aliyuncs.com"


@dataclass(frozen=True, slots=True)
class ApiAction:
    """One API operation: its wire name and the bucket its requests are paced by."""

    name: str
    access: Access
    version: str = DATAWORKS_VERSION
    # the product's one central host, for an action outside DataWorks's regional endpoints
    # (--endpoint replaces it too); None: the region's DataWorks endpoint
    host: str | None = None
    method: str = "POST"

    @property
    def mutating(self) -> bool:
        """A write: an answer lost after it was sent leaves its outcome unknown."""
        return self.access is Access.WRITE

    def __str__(self) -> str:
        return self.name


CREATE_EXPORT = ApiAction("CreateExportMigration", Access.WRITE)
CREATE_IMPORT = ApiAction("CreateImportMigration", Access.WRITE)
START = ApiAction("StartMigration", Access.WRITE)
GET_SUMMARY = ApiAction("GetMigrationSummary", Access.READ)
GET_PROCESS = ApiAction("GetMigrationProcess", Access.READ)
LIST = ApiAction("ListMigrations", Access.READ)
# OpenPlatform: a policy to upload an import package to OSS. It changes nothing (a second grant
# is as good as the first), so it is paced as a read.
AUTHORIZE_UPLOAD = ApiAction(
    "AuthorizeFileUpload",
    Access.READ,
    version=OPENPLATFORM_VERSION,
    host=OPENPLATFORM_HOST,
    method="GET",
)

# DataWorks's own actions (AuthorizeFileUpload belongs to OpenPlatform, as STS's to STS)
ACTIONS: dict[str, ApiAction] = {
    a.name: a for a in (CREATE_EXPORT, CREATE_IMPORT, START, GET_SUMMARY, GET_PROCESS, LIST)
}
WRITE_ACTIONS = frozenset(name for name, a in ACTIONS.items() if a.mutating)
READ_ACTIONS = frozenset(ACTIONS) - WRITE_ACTIONS
