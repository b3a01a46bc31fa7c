"""SAP Business One, as the registry knows it. Flows and ping load when first used."""

from __future__ import annotations

from ..spec import FlowContext, SystemSpec
from .config import SapBusinessOneConfig
from .session import SYSTEM


def _definitions(cfg: SapBusinessOneConfig, ctx: FlowContext):
    import dagster as dg

    from ...flows.sap_business_one import build_sap_business_one
    from .resource import SapBusinessOneResource

    return dg.Definitions.merge(
        build_sap_business_one(cfg, ctx.warehouse_kind),
        dg.Definitions(resources={SPEC.key: SapBusinessOneResource.from_section(cfg, ctx.data_dir)}),
    )


def _ping(cfg: SapBusinessOneConfig, data_dir):
    from .ping import ping

    return ping(cfg, data_dir)


def _entities(cfg):
    from .catalog import select

    return select(cfg.entities)


SPEC = SystemSpec(
    key="sap_business_one",
    title=SYSTEM,
    config_model=SapBusinessOneConfig,
    definitions=_definitions,
    ping=_ping,
    secrets=lambda cfg: [(cfg.password, "the password")],
    warehouse_entities=lambda cfg: _entities(cfg),
    url=lambda cfg: cfg.base_url,
)
