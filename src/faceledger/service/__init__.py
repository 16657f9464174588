"""The service layer: the one facade the CLI, the HTTP API and Python callers use.

It is the only place that combines engines, store, index and ledger. It splits along its
seams, each a small mixin over :class:`~faceledger.service.core.ServiceCore`:

- :mod:`~faceledger.service.admin`: collections and API keys;
- :mod:`~faceledger.service.persons`: persons and enrolment;
- :mod:`~faceledger.service.export`: a person's subject access export, with ledger proofs;
- :mod:`~faceledger.service.search`: detect, identify, similar, verify, compare, group;
- :mod:`~faceledger.service.media`: video indexing; :mod:`~faceledger.service.jobs` runs it
  in the background; :mod:`~faceledger.service.retention` erases expired persons;
- :mod:`~faceledger.service.review`: the review queue over search results, console sessions.

Every operation runs as one audited unit of work (:mod:`~faceledger.service.work`).
"""

from faceledger.service.admin import AdminOps
from faceledger.service.core import LOCAL_ACTOR, Progress, ServiceCore, local_actor
from faceledger.service.export import ExportedFace, ExportOps, PersonExport
from faceledger.service.media import MediaOps
from faceledger.service.persons import PersonOps
from faceledger.service.review import ReviewOps


class FaceService(ReviewOps, AdminOps, PersonOps, ExportOps, MediaOps):
    """Collections, enrolment, search and media over one data directory."""


__all__ = [
    "LOCAL_ACTOR",
    "ExportedFace",
    "FaceService",
    "PersonExport",
    "Progress",
    "ServiceCore",
    "local_actor",
]
