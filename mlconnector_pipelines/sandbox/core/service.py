"""The simulator base: the request pipeline every simulated service runs, and one admin API shape.

Each service keeps its state and rules in a models module and its HTTP answers apart. Its API
endpoints are wrapped by `SimulatedService.guarded`, which applies in one order what a real
service does before and after a handler: credential check → rate window → the faults a test has
set → the handler → the faults that lose an answer (a page cut mid-body; a write committed whose
answer never arrives). The service only says, in its own words, who the caller is and how it
refuses. Every service exposes the same admin shape under `/_sandbox/<service>/`: `faults` (POST
rules, DELETE all), `state` (what a test inspects) and `reset` (back to the seed, faults
cleared), so tests reset a shared server between cases instead of starting one per test.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .faults import AFTER_COMMIT, GATEWAY_TIMEOUT_PAGE, HTML_PAGE, FaultBook, FaultRule

Handler = Callable[[Request], Awaitable[Response]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Simulator(Protocol):
    faults: FaultBook

    def routes(self) -> list[Route]: ...  # the service's own API

    def state(self) -> dict: ...  # counts and facts a test asserts on

    def reset(self) -> None: ...  # the seed data again, counters cleared

    # Optionally `async def live_loop(self)`: changes records for as long as the server runs, when
    # the service's settings say `live`.


def admin_routes(key: str, simulator: Simulator) -> list[Route]:
    base = f"/_sandbox/{key}"

    async def faults(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            simulator.faults.clear()
            return JSONResponse({"rules": 0})
        body = await request.json()
        simulator.faults.add([FaultRule.model_validate(r) for r in body.get("rules", [])])
        return JSONResponse({"rules": len(simulator.faults.rules)})

    async def state(request: Request) -> Response:
        return Response(
            orjson.dumps({**simulator.state(), "faults_fired": dict(simulator.faults.fired)}, default=str),
            media_type="application/json",
        )

    async def reset(request: Request) -> JSONResponse:
        simulator.reset()
        simulator.faults.clear()
        simulator.faults.fired.clear()
        return JSONResponse({"reset": key})

    return [
        Route(f"{base}/faults", faults, methods=["POST", "DELETE"]),
        Route(f"{base}/state", state),
        Route(f"{base}/reset", reset, methods=["POST"]),
    ]


@dataclass
class RateWindow:
    """At most `limit` requests per caller in any sliding `window_seconds` (the services' own throttles)."""

    limit: int
    window_seconds: float
    _recent: dict[str, collections.deque] = field(default_factory=dict)

    def over(self, caller: str) -> bool:
        now = time.monotonic()
        recent = self._recent.setdefault(caller, collections.deque())
        while recent and recent[0] <= now - self.window_seconds:
            recent.popleft()
        if len(recent) >= self.limit:
            return True
        recent.append(now)
        return False

    def clear(self) -> None:
        self._recent.clear()


class SimulatedService:
    """The HTTP side of a simulator: `guarded(handler)` wraps each endpoint of the service's own API.

    A subclass sets `faults` (FaultBook), `counts` (a Counter: `requests`, `401`, `429`, and a
    failed status's code, beside its own) and, if the service throttles, `rate` (RateWindow), and
    answers the hooks below in the service's own error shapes. A handler finds the fault that
    fired for its request, if any, in `request.state.fault` (for kinds only the service can apply:
    `corrupt`, `mutate`).
    """

    faults: FaultBook
    counts: collections.Counter
    rate: RateWindow | None = None

    # -- hooks ---------------------------------------------------------------------------------

    def caller(self, request: Request) -> str | None:
        """Who is calling (the key of its rate window); None when its credential is refused."""
        raise NotImplementedError

    def unauthorized(self, request: Request) -> Response:
        """The service's answer to a missing, wrong or expired credential."""
        raise NotImplementedError

    def throttled(self, request: Request) -> Response:
        """The service's 429 past its rate window."""
        raise NotImplementedError

    def failure(self, request: Request, fault: FaultRule) -> Response:
        """A `status` fault's answer (`fault.status`, `fault.retry_after`) in the service's error shape."""
        raise NotImplementedError

    def expire_credentials(self) -> None:
        """Every token or session the service has issued ends now (the `expire_tokens` fault)."""
        raise NotImplementedError

    # -- the pipeline --------------------------------------------------------------------------

    def guarded(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            self.counts["requests"] += 1
            caller = self.caller(request)
            if caller is None:
                return self._refused(request)
            if self.rate is not None and self.rate.over(caller):
                self.counts["429"] += 1
                return self.throttled(request)
            fault = self.faults.take(request.url.path, request.method)
            request.state.fault = fault
            if fault is not None:
                if fault.kind == "status":
                    self.counts[str(fault.status)] += 1
                    return self.failure(request, fault)
                if fault.kind == "expire_tokens":
                    self.expire_credentials()
                    return self._refused(request)
                if fault.kind == "html":  # a proxy's sign-in page, answered 200
                    return Response(HTML_PAGE, media_type="text/html; charset=utf-8")
                if fault.kind == "json":  # 200 with JSON of another shape (`value`), as a misrouted gateway answers
                    return Response(orjson.dumps(fault.value), media_type="application/json")
                if fault.kind == "delay":
                    await asyncio.sleep(fault.delay_seconds)
                if fault.kind == "commit_late" and request.method in WRITES:
                    return await committed_later(handler, request, fault.delay_seconds)
            response = await handler(request)
            if fault is not None and fault.kind == "drop":
                return dropped_midway(response)
            if request.method in WRITES and response.status_code < 300:
                return after_commit(fault, response)
            return response

        return endpoint

    def _refused(self, request: Request) -> Response:
        self.counts["401"] += 1
        return self.unauthorized(request)


_LATE_WRITES: set[asyncio.Task] = set()  # held until done: the loop keeps only weak references to tasks


async def committed_later(handler: Handler, request: Request, seconds: float) -> Response:
    """A gateway's 504 now; the write itself runs `seconds` later, as a server that kept working would."""
    await request.body()  # read while the connection is open; the handler finds it cached

    async def later() -> None:
        await asyncio.sleep(seconds)
        await handler(request)

    task = asyncio.get_running_loop().create_task(later())
    _LATE_WRITES.add(task)
    task.add_done_callback(_LATE_WRITES.discard)
    return Response(GATEWAY_TIMEOUT_PAGE, status_code=504, media_type="text/html")


def dropped_midway(response: Response) -> Response:
    """Send half the body, then break the connection, as a proxy reset mid-download would."""
    body = bytes(response.body)

    async def half_then_fail():
        yield body[: len(body) // 2]
        raise ConnectionResetError("sandbox fault: connection dropped mid-page")

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return StreamingResponse(half_then_fail(), status_code=response.status_code, headers=headers)


def after_commit(fault: FaultRule | None, committed: Response) -> Response:
    """The answer to a write the model has already committed, unless a fault loses it on the way."""
    if fault is None or fault.kind not in AFTER_COMMIT:
        return committed
    if fault.kind == "commit_then_504":
        return Response(GATEWAY_TIMEOUT_PAGE, status_code=504, media_type="text/html")
    body = bytes(committed.body)
    if fault.kind == "commit_then_cut":
        cut = b"" if fault.value == "empty" else body[: len(body) // 2]
        headers = {k: v for k, v in committed.headers.items() if k.lower() != "content-length"}
        return Response(cut, status_code=committed.status_code, headers=headers)

    async def nothing_then_fail():
        raise ConnectionResetError("sandbox fault: connection dropped after the write was committed")
        yield b""  # pragma: no cover - makes this an async generator

    headers = {k: v for k, v in committed.headers.items() if k.lower() != "content-length"}
    headers["content-length"] = str(len(body))
    return StreamingResponse(nothing_then_fail(), status_code=committed.status_code, headers=headers)
