"""Acumatica, as the registry knows it. Flows, targets and ping load when first used."""

from __future__ import annotations

from ..spec import FlowContext, SystemSpec
from .auth import SYSTEM
from .config import AcumaticaConfig


def _definitions(cfg: AcumaticaConfig, ctx: FlowContext):
    import dagster as dg

    from ...flows.acumatica import build_acumatica
    from .resource import AcumaticaResource

    return dg.Definitions.merge(
        build_acumatica(cfg, ctx),
        dg.Definitions(resources={SPEC.key: AcumaticaResource.from_section(cfg, ctx.data_dir)}),
    )


def _ping(cfg: AcumaticaConfig, data_dir):
    from .ping import ping

    return ping(cfg, data_dir)


def _posting_target(cfg: AcumaticaConfig, data_dir, flow: str):
    from .resource import AcumaticaResource

    return AcumaticaResource.from_section(cfg, data_dir).target_for(flow)


def _secrets(cfg: AcumaticaConfig):
    yield cfg.auth.password, "the API user's password"
    if cfg.auth.client_secret is not None:
        yield cfg.auth.client_secret, "the Connected Application's secret"


def _entities(cfg):
    from .catalog import select

    return select(cfg.entities)


SPEC = SystemSpec(
    key="acumatica",
    title=SYSTEM,
    config_model=AcumaticaConfig,
    definitions=_definitions,
    ping=_ping,
    secrets=_secrets,
    warehouse_entities=lambda cfg: _entities(cfg),
    url=lambda cfg: cfg.endpoint_url,
    posting_target=_posting_target,
)
