"""`mlconnector lookml`: a LookML project for every current-state table the configured flows have loaded."""

from __future__ import annotations

from pathlib import Path

from ..config import ConnectorConfig
from ..systems.registry import enabled_sections
from ..warehouse.base import Warehouse
from ..warehouse.resource import WarehouseResource
from .project import MODEL, Dialect, LoadedTable, explore, render, view

__all__ = ["MODEL", "build_project", "write_project"]


def build_project(cfg: ConnectorConfig, warehouse: Warehouse, connection: str) -> dict[str, str]:
    """File path → LookML, for the tables that exist in the warehouse (a flow not yet run has none)."""
    from ..flows.windowed import table_specs

    d = warehouse.dialect
    dialect = Dialect(table=d.table, column=d.column, text=d.text)
    views, explores = [], []
    for spec, section in enabled_sections(cfg):
        if spec.warehouse_entities is None:
            continue
        entities = list(spec.warehouse_entities(section))
        by_set = {e.entity_set: e for e in entities}
        loaded: dict[str, LoadedTable] = {}
        for entity in entities:
            for table, item in zip(table_specs(entity), (entity, *entity.children), strict=True):
                columns = warehouse.column_types(table.name)
                if columns:
                    loaded[table.name] = LoadedTable(table, item, columns)
                    views.append(view(loaded[table.name], dialect, spec.title))
        explores += [e for e in (explore(entity, loaded, by_set, dialect, spec.title) for entity in entities) if e]
    return render(views, explores, connection)


def write_project(cfg: ConnectorConfig, out: Path, connection: str) -> list[Path]:
    """Write the project under `out` (files it wrote before and no longer writes are removed)."""
    files = build_project(cfg, WarehouseResource.from_config(cfg).process_config_and_initialize().open(), connection)
    views = out / "views"
    for stale in views.glob("*.view.lkml") if views.exists() else ():
        if f"views/{stale.name}" not in files:
            stale.unlink()
    written = []
    for relative, text in sorted(files.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
