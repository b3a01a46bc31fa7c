"""core.tls: one TLS context per CA bundle as it is on disk, shared by a process's clients."""

import os
import ssl

from mlconnector_pipelines.core.tls import ssl_context
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
