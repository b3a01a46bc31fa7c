"""Dagster resource for a Looker instance: one client (one login token) per step."""

from __future__ import annotations

from ..resource_base import SystemResource
from .client import LookerClient
from .config import LookerConfig


class LookerResource(SystemResource):
    """Looker API 4.0, read-only."""

    config_model = LookerConfig

    def client(self) -> LookerClient:
        cfg = self.section
        return LookerClient(cfg, client_secret=self.secret(cfg.client_secret, "looker.client_secret"))
