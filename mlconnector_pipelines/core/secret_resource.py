"""A Dagster resource that holds one secret without ever displaying it.

The value is an EnvVar Dagster resolves when a run starts, or the name of an entry in the
encrypted credential store, read when the secret is needed. Every system's resource and the
warehouse resource build on this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from .credentials import CredentialStore
from .errors import ConfigError


class SecretResource(dg.ConfigurableResource):
    secret: Optional[str] = Field(None, description="From an environment variable (dagster.EnvVar); never shown.")
    secret_credential: Optional[str] = Field(None, description="Name in the encrypted credential store.")
    credentials_dir: Optional[str] = None

    @staticmethod
    def secret_fields(ref, data_dir: Path) -> dict:
        """The fields for a connector.yaml SecretRef (or None: no secret)."""
        if ref is None or ref.credential:
            value = None
        else:
            # An EnvVar is resolved by Dagster when a run starts; the sandbox's demo secret is public.
            value = ref.sandbox_value() or dg.EnvVar(ref.env)
        return {"secret": value, "secret_credential": ref.credential if ref is not None else None,
                "credentials_dir": str(data_dir)}

    def optional_secret(self) -> str | None:
        if self.secret_credential:
            return CredentialStore(Path(self.credentials_dir or ".")).get(self.secret_credential)
        return self.secret or None

    def resolved_secret(self, what: str) -> str:
        value = self.optional_secret()
        if not value:
            raise ConfigError(f"{what}: no secret configured")
        return value
