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


def ensure_self_signed(directory: Path, name: str) -> SandboxCertificates:
    """A self-signed certificate, as on-premise SAP Business One servers present: no CA signs it.

    `ca_pem` is the certificate itself, the file a customer would hand over as their CA bundle.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    certs = SandboxCertificates(directory / f"{name}.pem", directory / f"{name}.pem", directory / f"{name}.key")
    if certs.server_cert_pem.is_file() and certs.server_key_pem.is_file():
        return certs
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} (self-signed)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    certs.server_key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certs.server_key_pem.chmod(0o600)
    certs.server_cert_pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certs
