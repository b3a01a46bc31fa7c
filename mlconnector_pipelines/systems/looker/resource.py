"""Dagster resource for a Looker instance: one client (one login token) per step."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...config import LookerConfig
from ..resource_base import ThrottledSystemResource
from .client import LookerClient


class LookerResource(ThrottledSystemResource):
    """Looker API 4.0, read-only. `secret` is the API3 client secret."""

    base_url: str
    client_id: str
    ca_bundle: Optional[str] = None
    query_task_poll_seconds: float = 2.0
    query_task_timeout_seconds: float = 3600.0

    @classmethod
    def from_config(cls, cfg: LookerConfig, credentials_dir: Path) -> "LookerResource":
        return cls(base_url=cfg.base_url, client_id=cfg.client_id,
                   ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
                   query_task_poll_seconds=cfg.query_task_poll_seconds,
                   query_task_timeout_seconds=cfg.query_task_timeout_seconds,
                   **cls.common_fields(cfg.client_secret, cfg.http, credentials_dir))

    def client(self) -> LookerClient:
        return LookerClient(self.base_url, self.client_id, self.resolved_secret("looker.client_secret"),
                            ca_bundle=self.ca_bundle, policy=self.policy(), poll_seconds=self.query_task_poll_seconds,
                            task_timeout_seconds=self.query_task_timeout_seconds)
