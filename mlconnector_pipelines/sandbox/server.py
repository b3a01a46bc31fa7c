"""Serves the registered simulators over HTTPS on loopback, in the foreground (CLI) or a thread (tests).

Services on the shared port share one app and a certificate from the sandbox CA; a service with
a port offset gets its own listener and its own self-signed certificate. Nothing here names a
service: it iterates the registry.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import Field, create_model
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .core.service import Simulator, admin_routes
from .core.tls import SandboxCertificates, ensure_certificates, ensure_self_signed
from .registry import SERVICES, BuildContext, SandboxService, certificate_name

log = logging.getLogger("mlconnector.sandbox")

SandboxSettings = create_model(
    "SandboxSettings",
    __doc__="Every simulated service's settings, by service key.",
    **{s.key: (s.settings, Field(default_factory=s.settings)) for s in SERVICES},
)


@dataclass
class RunningSandbox:
    url: str
    certificates: SandboxCertificates  # ca_pem: what a client trusts for these services
    services: dict[str, Any]  # the simulators, by key
    _server: uvicorn.Server
    _thread: threading.Thread | None

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def listeners(services: Iterable[SandboxService] = SERVICES) -> dict[int, list[SandboxService]]:
    """Services by port offset: each offset is one listener."""
    groups: dict[int, list[SandboxService]] = {}
    for service in services:
        groups.setdefault(service.port_offset, []).append(service)
    return groups


def build_app(services: list[SandboxService], settings, data_dir: Path) -> tuple[Starlette, dict[str, Simulator]]:
    context = BuildContext(data_dir=data_dir, services={})
    for service in services:
        context.services[service.key] = service.build(getattr(settings, service.key), context)
    simulators = context.services

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "services": list(simulators)})

    routes = [Route("/_sandbox/health", health)]
    for key, simulator in simulators.items():
        routes += admin_routes(key, simulator) + simulator.routes()
    live = [
        s for key, s in simulators.items() if getattr(getattr(settings, key), "live", False) and hasattr(s, "live_loop")
    ]

    @asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(s.live_loop()) for s in live]
        yield
        for task in tasks:
            task.cancel()

    return Starlette(routes=routes, lifespan=lifespan), simulators


def _certificates(services: list[SandboxService], data_dir: Path) -> SandboxCertificates:
    own = certificate_name(services[0])
    directory = data_dir / "sandbox"
    return ensure_self_signed(directory, own) if own else ensure_certificates(directory)


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket says
    # so, and with it on, every answer sent as two writes (head, then body) waited ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _server(app, certs: SandboxCertificates) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ssl_certfile=str(certs.server_cert_pem),
        ssl_keyfile=str(certs.server_key_pem),
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def start_in_thread(
    data_dir: Path, settings=None, port: int = 0, services: Iterable[str] | None = None
) -> RunningSandbox:
    """One listener on 127.0.0.1 (an ephemeral port by default), once it answers.

    `services`: keys of services that share a listener; default every service on the shared port."""
    chosen = [s for s in SERVICES if s.key in set(services)] if services is not None else listeners()[0]
    if len({s.port_offset for s in chosen}) != 1:
        raise ValueError("services on different listeners are started one listener at a time")
    certs = _certificates(chosen, data_dir)
    app, simulators = build_app(chosen, settings or SandboxSettings(), data_dir)
    sock = _bind("127.0.0.1", port)
    server = _server(app, certs)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox-" + "-".join(simulators)
    )
    thread.start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    _wait_until_up(url, certs.ca_pem)
    return RunningSandbox(url, certs, simulators, server, thread)


def serve_forever(data_dir: Path, settings, host: str, port: int) -> None:
    """Every registered service: the shared port, and each offset listener beside it."""
    servers = []
    for offset, group in sorted(listeners().items()):
        certs = _certificates(group, data_dir)
        app, _ = build_app(group, settings, data_dir)
        servers.append((_server(app, certs), _bind(host, port + offset)))
        trust = f"CA: {certs.ca_pem}" if offset == 0 else f"self-signed: {certs.ca_pem}"
        print(f"sandbox: {', '.join(s.title for s in group)} on https://{host}:{port + offset}  ({trust})", flush=True)

    asyncio.run(serve_all(servers))


async def serve_all(servers: list[tuple[uvicorn.Server, socket.socket]]) -> None:
    """Each server on its socket, on this (plain asyncio) event loop, until they stop."""
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))


def _wait_until_up(url: str, ca: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/_sandbox/health", verify=str(ca), timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
