"""SAP Business One → warehouse: all Service Layer entities in one partitioned multi-asset.

One step means one Service Layer session per run: logins are slow and sessions use licences.
"""

import dagster as dg

from ..systems.sap_business_one import catalog
from ..systems.sap_business_one.config import SapBusinessOneConfig
from .windowed import WindowedSource, build_windowed

SOURCE = WindowedSource(
    system="SAP Business One",
    group="sap_business_one",
    resource_key="sap_business_one",
    kind="sap",
    job_name="sap_business_one_to_warehouse",
    one_step=True,
)
JOB = SOURCE.job_name


def build_sap_business_one(cfg: SapBusinessOneConfig, warehouse_kind: str) -> dg.Definitions:
    return build_windowed(SOURCE, catalog.select(cfg.entities), cfg.partitions, warehouse_kind, counts=False)
