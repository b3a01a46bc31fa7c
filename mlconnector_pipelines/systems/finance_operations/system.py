"""Finance & Operations, as the registry knows it. Flows, targets and ping load when first used."""

from __future__ import annotations

from ..spec import FlowContext, SystemSpec
from .client import SYSTEM
from .config import FinanceOperationsConfig


def _definitions(cfg: FinanceOperationsConfig, ctx: FlowContext):
    import dagster as dg

    from ...flows.finance_operations import build_finance_operations
    from .resource import FinanceOperationsResource

    return dg.Definitions.merge(
        build_finance_operations(cfg, ctx),
        dg.Definitions(resources={SPEC.key: FinanceOperationsResource.from_section(cfg, ctx.data_dir)}),
    )


def _ping(cfg: FinanceOperationsConfig, data_dir):
    from .ping import ping

    return ping(cfg, data_dir)


def _posting_target(cfg: FinanceOperationsConfig, data_dir, flow: str):
    from .resource import FinanceOperationsResource

    return FinanceOperationsResource.from_section(cfg, data_dir).journal_target()


SPEC = SystemSpec(
    key="finance_operations",
    title=SYSTEM,
    config_model=FinanceOperationsConfig,
    definitions=_definitions,
    ping=_ping,
    secrets=lambda cfg: [(cfg.auth.client_secret, "the client secret")],
    url=lambda cfg: f"{cfg.api_url}/data",
    posting_target=_posting_target,
)
