"""Business Central → warehouse: one partitioned multi-asset per BC entity (with its lines)."""

import dagster as dg

from ..systems.business_central import catalog
from ..systems.business_central.config import BusinessCentralConfig
from .windowed import WindowedSource, build_windowed

SOURCE = WindowedSource(
    system="Business Central",
    group="business_central",
    resource_key="business_central",
    kind="businesscentral",
    job_name="business_central_to_warehouse",
)
JOB = SOURCE.job_name


def build_business_central(cfg: BusinessCentralConfig, warehouse_kind: str) -> dg.Definitions:
    return build_windowed(SOURCE, catalog.select(cfg.entities), cfg.partitions, warehouse_kind)
