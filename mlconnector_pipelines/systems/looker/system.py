"""Looker (read-only), as the registry knows it. Flows and ping load when first used."""

from __future__ import annotations

from ..spec import FlowContext, SystemSpec
from .config import LookerConfig
from .session import SYSTEM


def _definitions(cfg: LookerConfig, ctx: FlowContext):
    import dagster as dg

    from ...flows.looker import build_looker
    from .resource import LookerResource

    return dg.Definitions.merge(
        build_looker(cfg, ctx.warehouse_kind, ctx.data_dir, ctx.ingest),
        dg.Definitions(resources={SPEC.key: LookerResource.from_section(cfg, ctx.data_dir)}),
    )


def _ping(cfg: LookerConfig, data_dir):
    from .ping import ping

    return ping(cfg, data_dir)


SPEC = SystemSpec(
    key="looker",
    title=SYSTEM,
    config_model=LookerConfig,
    definitions=_definitions,
    ping=_ping,
    secrets=lambda cfg: [(cfg.client_secret, "the API3 client secret")],
    url=lambda cfg: f"{cfg.base_url}/api/4.0",
)
