"""The sandbox's own certificate authority, created on first start and reused afterwards.

The product trusts `<data_dir>/sandbox/ca.pem` explicitly; verification is never turned off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class SandboxCertificates:
    ca_pem: Path
    server_cert_pem: Path
    server_key_pem: Path


def ensure_certificates(directory: Path) -> SandboxCertificates:
    directory.mkdir(parents=True, exist_ok=True)
    certs = SandboxCertificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if all(p.is_file() for p in (certs.ca_pem, certs.server_cert_pem, certs.server_key_pem)):
        return certs
    ca = trustme.CA(organization_name="ml-connector sandbox", organization_unit_name="local CA")
    server = ca.issue_cert(*SERVER_NAMES)
    # Write the key first and the CA last: a reader that finds ca.pem finds a complete set.
    server.private_key_pem.write_to_path(str(certs.server_key_pem))
    certs.server_key_pem.chmod(0o600)
    server.cert_chain_pems[0].write_to_path(str(certs.server_cert_pem))
    ca.cert_pem.write_to_path(str(certs.ca_pem))
    return certs
