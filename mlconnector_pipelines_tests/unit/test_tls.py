"""core.tls: one TLS context per CA bundle as it is on disk, shared by a process's clients."""

import os
import ssl

import pytest

from mlconnector_pipelines.core.tls import pinned_ssl_context, ssl_context
from mlconnector_pipelines.sandbox.core.tls import ensure_certificates


def serials(context: ssl.SSLContext) -> set[str]:
    return {c["serialNumber"] for c in context.get_ca_certs()}


def test_clients_of_one_bundle_share_a_context_and_a_rewritten_bundle_is_trusted_anew(tmp_path):
    first, second = ensure_certificates(tmp_path / "a"), ensure_certificates(tmp_path / "b")
    bundle = tmp_path / "customer-ca.pem"
    bundle.write_bytes(first.ca_pem.read_bytes())
    shared = ssl_context(bundle, what="x")
    assert ssl_context(str(bundle), what="y") is shared  # built once, whoever asks
    first_ca = serials(shared) - serials(ssl_context(None, what="z"))
    assert len(first_ca) == 1  # the system store, plus the bundle's CA

    bundle.write_bytes(second.ca_pem.read_bytes())  # the customer's CA was renewed
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even within one clock tick
    renewed = ssl_context(bundle, what="x")
    assert renewed is not shared
    assert not first_ca & serials(renewed) and len(serials(renewed) - serials(ssl_context(None, what="z"))) == 1


def _serve_tls(certs):
    import http.server
    import threading

    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certs.server_cert_pem, certs.server_key_pem)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    server.socket = served.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_pinned_certificate_is_the_servers_identity_whoever_signed_it_and_whatever_name_it_bears(tmp_path):
    """`pinned_sha256` trusts the server's certificate itself. One a CA signed failed every connection, the pin
    matching (OpenSSL looked past it for its issuer); one issued to another name than the URL's host (an
    on-premise B1SERVER reached by address) failed the name check, which no setting could fix. Another
    certificate on the same address is still refused."""
    import hashlib

    import httpx

    certs, other = ensure_certificates(tmp_path / "a"), ensure_certificates(tmp_path / "b")
    server, impostor = _serve_tls(certs), _serve_tls(other)
    try:
        port = server.server_address[1]
        pin = hashlib.sha256(ssl.PEM_cert_to_DER_cert(certs.server_cert_pem.read_text())).hexdigest()
        context = pinned_ssl_context(
            "127.0.0.1", port, pin, what="sap_business_one", system="SAP Business One", timeout_seconds=30
        )
        with httpx.Client(verify=context) as client:
            assert client.get(f"https://127.0.0.1:{port}/").text == "ok"
            assert client.get(f"https://127.0.0.1:{port}/", extensions={"sni_hostname": "b1server"}).text == "ok"
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                client.get(f"https://127.0.0.1:{impostor.server_address[1]}/")
    finally:
        server.shutdown()
        impostor.shutdown()
