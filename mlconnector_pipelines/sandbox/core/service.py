"""The simulator base: what every simulated service offers, and the admin API built from it.

Each service keeps its state and rules in a models module and its HTTP answers apart, and
exposes the same admin shape under `/_sandbox/<service>/`: `faults` (POST rules, DELETE all),
`state` (what a test inspects) and `reset` (back to the seed, faults cleared), so tests reset
a shared server between cases instead of starting one per test.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .faults import GATEWAY_TIMEOUT_PAGE, FaultBook, FaultRule


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


def after_commit(fault: FaultRule | None, committed: Response) -> Response:
    """The answer to a write the model has already committed, unless a fault loses it on the way."""
    if fault is None or fault.kind not in ("commit_then_drop", "commit_then_504"):
        return committed
    if fault.kind == "commit_then_504":
        return Response(GATEWAY_TIMEOUT_PAGE, status_code=504, media_type="text/html")
    body = bytes(committed.body)

    async def nothing_then_fail():
        raise ConnectionResetError("sandbox fault: connection dropped after the write was committed")
        yield b""  # pragma: no cover - makes this an async generator

    headers = {k: v for k, v in committed.headers.items() if k.lower() != "content-length"}
    headers["content-length"] = str(len(body))
    return StreamingResponse(nothing_then_fail(), status_code=committed.status_code, headers=headers)
