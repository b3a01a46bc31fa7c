"""The code location: one Definitions object built from the validated connector config.

Loading builds objects only; no external API is called here (Dagster reloads code often).
"""

from __future__ import annotations

import dagster as dg

from .config import ConnectorConfig, load_config
from .flows.business_central import build_business_central
from .flows.connectivity import build_connectivity
from .flows.looker import build_looker
from .flows.sap_business_one import build_sap_business_one
from .systems.business_central.resource import BusinessCentralResource
from .systems.sap_business_one.resource import SapBusinessOneResource
from .systems.looker.resource import LookerResource
from .warehouse.io_manager import WarehouseTableIOManager
from .warehouse.resource import WarehouseResource


def build_definitions(cfg: ConnectorConfig | None = None) -> dg.Definitions:
    cfg = cfg or load_config()
    warehouse = WarehouseResource.from_config(cfg)
    parts = [dg.Definitions(resources={"warehouse": warehouse,
                                       "warehouse_io": WarehouseTableIOManager(warehouse=warehouse)}),
             build_connectivity(cfg)]
    if cfg.business_central is not None and cfg.business_central.enabled:
        parts.append(build_business_central(cfg.business_central, warehouse.kind))
        parts.append(dg.Definitions(resources={
            "business_central": BusinessCentralResource.from_config(cfg.business_central, cfg.data_dir)}))
    if cfg.sap_business_one is not None and cfg.sap_business_one.enabled:
        parts.append(build_sap_business_one(cfg.sap_business_one, warehouse.kind))
        parts.append(dg.Definitions(resources={
            "sap_business_one": SapBusinessOneResource.from_config(cfg.sap_business_one, cfg.data_dir)}))
    if cfg.looker is not None and cfg.looker.enabled:
        parts.append(build_looker(cfg.looker, warehouse.kind, cfg.data_dir, cfg.ingest))
        parts.append(dg.Definitions(resources={"looker": LookerResource.from_config(cfg.looker, cfg.data_dir)}))
    return dg.Definitions.merge(*parts)


defs = build_definitions()
