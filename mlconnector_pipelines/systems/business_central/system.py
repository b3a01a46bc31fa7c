"""Business Central, as the registry knows it. Flows and ping load when first used."""

from __future__ import annotations

from ..spec import FlowContext, SystemSpec
from .client import SYSTEM
from .config import BusinessCentralConfig


def _definitions(cfg: BusinessCentralConfig, ctx: FlowContext):
    import dagster as dg

    from ...flows.business_central import build_business_central
    from .resource import BusinessCentralResource

    return dg.Definitions.merge(
        build_business_central(cfg, ctx),
        dg.Definitions(resources={SPEC.key: BusinessCentralResource.from_section(cfg, ctx.data_dir)}),
    )


def _ping(cfg: BusinessCentralConfig, data_dir):
    from .ping import ping

    return ping(cfg, data_dir)


def _entities(cfg):
    from .catalog import select

    return select(cfg.entities)


SPEC = SystemSpec(
    key="business_central",
    title=SYSTEM,
    config_model=BusinessCentralConfig,
    definitions=_definitions,
    ping=_ping,
    secrets=lambda cfg: (
        [(cfg.auth.client_secret, "the client secret")]
        + ([(cfg.notifications.client_state, "the notifications' clientState")] if cfg.notifications else [])
    ),
    warehouse_entities=lambda cfg: _entities(cfg),
    url=lambda cfg: cfg.api_base_url,
)
