"""The sandbox's HTTP server behaves like a real one on the wire."""

import asyncio
import socket
import threading

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlconnector_pipelines.sandbox.core.tls import ensure_certificates
from mlconnector_pipelines.sandbox.server import _bind, _server, serve_all


def test_connections_send_without_waiting_for_acknowledgements(tmp_path):
    """TCP_NODELAY on every accepted connection of `mlconnector sandbox` (plain asyncio, as serve_forever
    runs it). With Nagle on, an answer written as head, then body, waited for the client's delayed ACK:
    ~40 ms on every request, which no real server adds and every benchmark carried."""
    certs = ensure_certificates(tmp_path)
    server = _server(Starlette(routes=[Route("/", lambda request: JSONResponse({"ok": True}))]), certs)
    sock = _bind("127.0.0.1", 0)
    thread = threading.Thread(target=asyncio.run, args=(serve_all([(server, sock)]),), daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{sock.getsockname()[1]}/"
        with httpx.Client(verify=str(certs.ca_pem), timeout=10) as client:
            for _ in range(100):
                try:
                    assert client.get(url).json() == {"ok": True}
                    break
                except httpx.ConnectError:
                    threading.Event().wait(0.05)
            connections = list(server.server_state.connections)
            assert connections
            for connection in connections:
                assert connection.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.should_exit = True
        thread.join(10)
