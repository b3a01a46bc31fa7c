"""The code location: one Definitions object built from the validated connector config.

Loading builds objects only; no external API is called here (Dagster reloads code often).
"""

from __future__ import annotations

import dagster as dg

from .config import ConnectorConfig, load_config
from .execution import in_process_unless_asked
from .flows.connectivity import build_connectivity
from .flows.replay import build_replay
from .systems.registry import FlowContext, enabled_sections
from .warehouse.io_manager import WarehouseTableIOManager
from .warehouse.resource import WarehouseResource


def build_definitions(cfg: ConnectorConfig | None = None) -> dg.Definitions:
    cfg = cfg or load_config()
    warehouse = WarehouseResource.from_config(cfg)
    ctx = FlowContext(warehouse_kind=warehouse.kind, data_dir=cfg.data_dir, ingest=cfg.ingest, config=cfg)
    parts = [
        dg.Definitions(
            resources={"warehouse": warehouse, "warehouse_io": WarehouseTableIOManager(warehouse=warehouse)},
            executor=in_process_unless_asked,
        ),
        build_connectivity(cfg),
        build_replay(cfg),
    ]
    parts.extend(spec.definitions(section, ctx) for spec, section in enabled_sections(cfg))
    return dg.Definitions.merge(*parts)


defs = build_definitions()
