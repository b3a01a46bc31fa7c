"""Dynamics 365 Sales (Dataverse), as the registry knows it. Flows, sync and ping load when first used."""

from __future__ import annotations

from ..spec import FlowContext, SystemSpec
from .client import SYSTEM
from .config import DataverseConfig


def _definitions(cfg: DataverseConfig, ctx: FlowContext):
    import dagster as dg

    from ...flows.dynamics_sales import build_dynamics_sales
    from .resource import DataverseResource

    return dg.Definitions.merge(
        build_dynamics_sales(cfg, ctx),
        dg.Definitions(resources={SPEC.key: DataverseResource.from_section(cfg, ctx.data_dir)}),
    )


def _ping(cfg: DataverseConfig, data_dir):
    from .ping import ping

    return ping(cfg, data_dir)


def _replay(config, cfg: DataverseConfig, record, run_id: str, dry_run: bool) -> tuple[str, bool]:
    from .replay import replay_deal

    return replay_deal(config, cfg, record, run_id=run_id, dry_run=dry_run)


SPEC = SystemSpec(
    key="dataverse",
    title=SYSTEM,
    config_model=DataverseConfig,
    definitions=_definitions,
    ping=_ping,
    secrets=lambda cfg: [(cfg.auth.client_secret, "the client secret")],
    url=lambda cfg: cfg.api_url,
    replay=_replay,
    replays=("dataverse/sales_to_business_central", "dataverse/sales_customers"),
)
