"""The simulator's service as a transport: answered in this process, no socket, no signature
check. A testing helper shipped with the code: the real client over the one model of the service.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from runner.dataworks.actions import ACTIONS
from runner.dataworks.transport import HttpRequest, HttpResponse
from runner.sim.service import Call, Service, access_key_of, error, params_of

NOT_FOUND = "Specified api is not found, please check your url and method."


class InProcessTransport:
    """A `Transport` whose every request is answered by `service` at `now()` (epoch seconds)."""

    def __init__(
        self,
        service: Service,
        *,
        now: Callable[[], float],
        base_url: str = "https://dataworks-sim.invalid",
    ) -> None:
        self._service = service
        self._now = now
        self._base_url = base_url
        self._ids = itertools.count(1)

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        parts = urlsplit(request.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in request.headers.items()}
        params = params_of(query, headers, request.body)
        name = headers.get("x-acs-action") or query.get("Action") or ""
        rid = f"INPROC-{next(self._ids):08d}"
        self._service.stats.requests[name or "(none)"] += 1
        action = ACTIONS.get(name)
        host = parts.netloc
        if action is None:
            answer = error(rid, host, 404, "InvalidApi.NotFound", NOT_FOUND)
        else:
            call = Call(params, access_key_of(headers, params), self._now(), self._base_url)
            answer = self._service.operate(action, call, rid, host)
        body = json.dumps(answer.body, separators=(",", ":")).encode()
        return HttpResponse(answer.status, {"x-acs-request-id": rid}, body)
