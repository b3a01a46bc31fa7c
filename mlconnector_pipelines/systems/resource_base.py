"""What every system's Dagster resource shares: the HTTP policy fields, and its secret."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config import SecretRef
from ..core.http import HttpPolicy
from ..core.secret_resource import SecretResource


class ThrottledSystemResource(SecretResource):
    """Base of the per-system resources: the secret (see SecretResource) and the HTTP policy."""

    timeout_seconds: float = 120.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0
    requests_per_minute: Optional[int] = None
    requests_burst: Optional[int] = None

    @classmethod
    def common_fields(cls, secret: SecretRef, http: HttpPolicy, data_dir: Path) -> dict:
        return {**cls.secret_fields(secret, data_dir), **http.model_dump()}

    def policy(self) -> HttpPolicy:
        return HttpPolicy(**{name: getattr(self, name) for name in HttpPolicy.model_fields})
