"""Microsoft Entra ID (client credentials), the token issuer of BC, F&O and Dataverse."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..core.declaration import CliOption, SandboxService

# The demo identity. Not secrets: they only open the local simulator.
TENANT_ID = "8f3c6a2e-0d4b-4c1e-9a57-2b9e5d7c1a00"
CLIENT_ID = "5d2a9c1e-7b3f-4e8a-b6d0-91c4f2e8a7b3"
CLIENT_SECRET = "sandbox-client-secret"


class EntraSettings(BaseModel):
    tenant_id: str = TENANT_ID
    client_id: str = CLIENT_ID
    client_secret: str = Field(CLIENT_SECRET, description="The demo app registration's secret.")
    token_lifetime_seconds: int = 3599
    extra_resources: list[str] = Field(
        default_factory=list,
        description=(
            "Resources the app may get tokens for besides the simulated services' own (e.g. to test that a "
            "token for one resource is refused by another)."
        ),
    )


def authority(url: str, ca_bundle: str, secret_env: str) -> dict:
    """The `auth:` settings of a Microsoft system whose app registration lives in this simulator."""
    return {
        "authority_host": url,
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "ca_bundle": ca_bundle,
        "client_secret": {"env": secret_env, "sandbox_default": CLIENT_SECRET},
    }


SERVICE = SandboxService(
    key="entra",
    title="Microsoft Entra ID",
    settings=EntraSettings,
    simulator=f"{__package__}.simulator",
    cli=(CliOption("entra-token-lifetime", ("token_lifetime_seconds",), "Seconds an Entra access token lives."),),
)
