"""What every system's Dagster resource shares: the HTTP policy fields and secret resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from ..config import SecretRef
from ..core.credentials import CredentialStore
from ..core.errors import ConfigError
from ..core.http import HttpPolicy


class ThrottledSystemResource(dg.ConfigurableResource):
    """Base of the per-system resources. The secret is never a displayed value: an EnvVar resolved
    at run start, or the name of an entry in the encrypted credential store."""

    secret: Optional[str] = Field(None, description="From an environment variable (dagster.EnvVar); never shown.")
    secret_credential: Optional[str] = Field(None, description="Name in the encrypted credential store.")
    credentials_dir: Optional[str] = None
    timeout_seconds: float = 120.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0
    requests_per_minute: Optional[int] = None
    requests_burst: Optional[int] = None

    @staticmethod
    def common_fields(secret: SecretRef, http: HttpPolicy, data_dir: Path) -> dict:
        if secret.credential:
            value = None
        else:
            # An EnvVar is resolved by Dagster when a run starts; the sandbox's demo secret is public.
            value = secret.sandbox_value() or dg.EnvVar(secret.env)
        return {"secret": value, "secret_credential": secret.credential, "credentials_dir": str(data_dir),
                **http.model_dump()}

    def resolved_secret(self, what: str) -> str:
        if self.secret_credential:
            return CredentialStore(Path(self.credentials_dir or ".")).get(self.secret_credential)
        if not self.secret:
            raise ConfigError(f"{what}: no secret configured")
        return self.secret

    def policy(self) -> HttpPolicy:
        return HttpPolicy(**{name: getattr(self, name) for name in HttpPolicy.model_fields})
