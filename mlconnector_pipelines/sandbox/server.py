"""Runs the sandbox over HTTPS on loopback, in the foreground (CLI) or a background thread (tests)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from .app import Sandbox, SandboxSettings
from .sap_b1 import SapSettings, ServiceLayerSimulator
from .tls import SandboxCertificates, ensure_certificates, ensure_self_signed


@dataclass
class RunningSandbox:
    url: str
    certificates: SandboxCertificates
    sandbox: Sandbox
    _server: uvicorn.Server
    _thread: threading.Thread | None

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _server(app, certs: SandboxCertificates) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on",
        ssl_certfile=str(certs.server_cert_pem), ssl_keyfile=str(certs.server_key_pem),
        timeout_keep_alive=30, timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def _serve_in_thread(app, certs: SandboxCertificates, port: int, health_path: str, name: str):
    """Serve on 127.0.0.1 (an ephemeral port by default); return (url, server, thread) once it answers."""
    sock = _bind("127.0.0.1", port)
    server = _server(app, certs)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=name)
    thread.start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    _wait_until_up(url, certs.ca_pem, path=health_path)
    return url, server, thread


def start_in_thread(data_dir: Path, settings: SandboxSettings | None = None, port: int = 0) -> RunningSandbox:
    """Entra ID + Business Central, trusted through the sandbox CA."""
    certs = ensure_certificates(data_dir / "sandbox")
    sandbox = Sandbox(settings or SandboxSettings())
    url, server, thread = _serve_in_thread(sandbox.asgi_app(), certs, port, "/_sandbox/health", "sandbox")
    return RunningSandbox(url, certs, sandbox, server, thread)


def serve_forever(data_dir: Path, settings: SandboxSettings, host: str, port: int,
                  sap_settings: SapSettings | None = None, sap_port: int | None = None) -> None:
    """Entra + Business Central on `port`; the SAP B1 Service Layer on `sap_port` with its own certificate."""
    import asyncio

    certs = ensure_certificates(data_dir / "sandbox")
    servers = [(_server(Sandbox(settings).asgi_app(), certs), _bind(host, port))]
    print(f"sandbox: Entra ID + Business Central on https://{host}:{port}  (CA: {certs.ca_pem})", flush=True)
    if sap_port is not None:
        sap_certs = ensure_self_signed(data_dir / "sandbox", "sap-b1")
        servers.append((_server(ServiceLayerSimulator(sap_settings or SapSettings()).asgi_app(), sap_certs),
                        _bind(host, sap_port)))
        print(f"sandbox: SAP Business One Service Layer on https://{host}:{sap_port}/b1s/v1  "
              f"(self-signed: {sap_certs.ca_pem})", flush=True)

    async def serve_all() -> None:
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))

    asyncio.run(serve_all())


@dataclass
class RunningServiceLayer:
    """The SAP Business One Service Layer simulator, with its own self-signed certificate."""

    url: str
    certificate: Path  # the self-signed certificate: what a customer hands over as their CA bundle
    simulator: ServiceLayerSimulator
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_service_layer_in_thread(data_dir: Path, settings: SapSettings | None = None,
                                  port: int = 0) -> RunningServiceLayer:
    certs = ensure_self_signed(data_dir / "sandbox", "sap-b1")
    simulator = ServiceLayerSimulator(settings or SapSettings())
    url, server, thread = _serve_in_thread(simulator.asgi_app(), certs, port, "/_sandbox/sap/stats", "sap-b1")
    return RunningServiceLayer(url, certs.ca_pem, simulator, server, thread)


def _wait_until_up(url: str, ca: Path, timeout: float = 30.0, path: str = "/_sandbox/health") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}{path}", verify=str(ca), timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
