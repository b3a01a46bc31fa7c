"""Business Central → warehouse: one partitioned multi-asset per BC entity (with its lines)."""


import time
from datetime import datetime, timezone
from functools import lru_cache

import dagster as dg
import pandas as pd

from ..config import BusinessCentralConfig
from ..core.prefetch import prefetch
from ..core.windows import TimeWindow, assign_window_starts
from ..systems.business_central import catalog
from ..systems.business_central.catalog import BcEntity, ChildEntity
from ..systems.business_central.resource import BusinessCentralResource
from ..warehouse.base import ReplaceScope, Warehouse
from ..warehouse.resource import WarehouseResource
from ..warehouse.schema import (COMPANY_ID, COMPANY_NAME, EXTRACTED_AT, PARENT_ID, PARENT_VERSION_ID, RUN_ID,
                                VERSION_ID, WINDOW_START, TableSpec, column_name)
from .partitions import partitions_def, settled_window_schedule, windows_for

GROUP = "business_central"
POOL = "business_central"
JOB = "business_central_to_warehouse"
MODIFIED = "lastModifiedDateTime"


@lru_cache(maxsize=4096)
def _col(source_field: str) -> str:
    return column_name(source_field)


def table_specs(entity: BcEntity) -> tuple[TableSpec, list[tuple[ChildEntity, TableSpec]]]:
    parent = TableSpec(
        name=entity.table, key=(COMPANY_ID, _col(entity.key)), modified_column=_col(entity.modified_field),
        types={_col(f): t for f, t in entity.types.items()},
    )
    children = [
        (child, TableSpec(name=child.table, key=(COMPANY_ID, PARENT_ID, _col(child.key)), modified_column=None,
                          types={_col(f): t for f, t in child.types.items()}, parent=parent))
        for child in entity.children
    ]
    return parent, children


def page_frames(entity: BcEntity, page: list[dict], *, company: dict, windows: list[TimeWindow],
                run_id: str, extracted_at: datetime) -> dict[str, pd.DataFrame]:
    """One API page -> a frame per table (document, and its lines), with the house metadata columns."""
    frames: dict[str, pd.DataFrame] = {}
    children_rows: dict[str, list[dict]] = {child.table: [] for child in entity.children}
    if entity.children:
        for record in page:
            version = f"{record[entity.key]}@{record[MODIFIED]}"
            for child in entity.children:
                for line in record.pop(child.navigation, None) or ():
                    line[PARENT_ID] = record[entity.key]
                    line[PARENT_VERSION_ID] = version
                    line[WINDOW_START] = record[MODIFIED]  # resolved to the window start below
                    children_rows[child.table].append(line)
    parent = pd.DataFrame.from_records(page)
    parent[VERSION_ID] = parent[entity.key].astype(str) + "@" + parent[MODIFIED].astype(str)
    parent[WINDOW_START] = assign_window_starts(parent[MODIFIED], windows).values
    frames[entity.table] = _finish(parent, company, run_id, extracted_at)
    for child in entity.children:
        rows = children_rows[child.table]
        if rows:
            frame = pd.DataFrame.from_records(rows)
            frame[WINDOW_START] = assign_window_starts(frame[WINDOW_START], windows).values
            frames[child.table] = _finish(frame, company, run_id, extracted_at)
    return frames


def _finish(frame: pd.DataFrame, company: dict, run_id: str, extracted_at: datetime) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("@odata")])
    frame.columns = [c if c.startswith("_") else _col(c) for c in frame.columns]
    frame[COMPANY_ID] = company["id"]
    frame[COMPANY_NAME] = company["name"]
    frame[EXTRACTED_AT] = extracted_at
    frame[RUN_ID] = run_id
    return frame


def load_entity(context: dg.AssetExecutionContext, entity: BcEntity, client, warehouse: Warehouse,
                companies: list[dict], windows: list[TimeWindow]) -> dict:
    """Extract every company's window(s) page by page into one atomic replace; returns run figures."""
    parent, children = table_specs(entity)
    tables = [parent, *(spec for _, spec in children)]
    scope = ReplaceScope(tuple(c["id"] for c in companies), windows[0].start, windows[-1].end)
    extracted_at = datetime.now(timezone.utc)
    by_name = {spec.name: spec for spec in tables}
    high_water: str | None = None
    pages = 0
    started = time.monotonic()
    with warehouse.replace_windows(tables, scope) as load:
        for company in companies:
            company_rows = 0
            for page in prefetch(client.pages(company["id"], entity, scope.start, scope.end)):
                pages += 1
                if not page:
                    continue
                page_max = max(r[MODIFIED] for r in page)
                high_water = page_max if high_water is None or page_max > high_water else high_water
                for table_name, frame in page_frames(entity, page, company=company, windows=windows,
                                                     run_id=context.run_id, extracted_at=extracted_at).items():
                    load.write(by_name[table_name], frame)
                company_rows += len(page)
                if pages % 10 == 0:
                    context.log.info(f"{entity.entity_set}: {company['name']}: {company_rows:,} rows so far")
            context.log.info(f"{entity.entity_set}: {company['name']}: {company_rows:,} rows in "
                             f"[{scope.start.isoformat()}, {scope.end.isoformat()})")
        rows = load.rows_written
    return {"rows": rows, "pages": pages, "high_water": high_water, "scope": scope,
            "seconds": time.monotonic() - started, "tables": tables}


def _count_check(entity: BcEntity, parent: TableSpec, client, warehouse: Warehouse, companies: list[dict],
                 end: datetime) -> dg.AssetCheckResult:
    """Current state vs the source's $count over the loaded range, per company."""
    problems, details = [], {}
    severity = dg.AssetCheckSeverity.WARN
    for company in companies:
        loaded_from = warehouse.loaded_from(parent, company["id"])
        if loaded_from is None:
            continue
        source = client.count(company["id"], entity, modified_from=loaded_from, modified_before=end)
        current = warehouse.current_count(parent, company["id"], loaded_from, end)
        details[company["name"]] = {"source": source, "warehouse": current}
        if current < source:
            severity = dg.AssetCheckSeverity.ERROR
            problems.append(f"{company['name']}: {source - current} record(s) modified in "
                            f"[{loaded_from.isoformat()}, {end.isoformat()}) are missing from the warehouse "
                            "(a window in that range is not loaded, or rows were lost)")
        elif current > source:
            problems.append(f"{company['name']}: the warehouse has {current - source} more record(s) than the "
                            "source in that range (changed or deleted since): load the later windows")
    return dg.AssetCheckResult(
        check_name="matches_source_count", asset_key=dg.AssetKey([GROUP, entity.table]), passed=not problems,
        severity=severity, description="; ".join(problems) or "Current state matches the source's $count.",
        metadata={"per_company": dg.MetadataValue.json(details)},
    )


def _entity_assets(entity: BcEntity, partitions: dg.TimeWindowPartitionsDefinition, warehouse_kind: str):
    parent_key = dg.AssetKey([GROUP, entity.table])
    specs = [dg.AssetSpec(parent_key, description=f"{entity.description} Current state (latest version per "
                          f"company and id); every version is in `{entity.table}_changes`.",
                          group_name=GROUP, kinds={"businesscentral", warehouse_kind},
                          metadata={"source": f"BC API v2.0 {entity.entity_set}",
                                    "dagster/table_name": entity.table},
                          partitions_def=partitions)]
    for child in entity.children:
        specs.append(dg.AssetSpec(dg.AssetKey([GROUP, child.table]), description=child.description,
                                  group_name=GROUP, kinds={"businesscentral", warehouse_kind}, deps=[parent_key],
                                  metadata={"source": f"BC API v2.0 {entity.entity_set}/{child.navigation}",
                                            "dagster/table_name": child.table},
                                  partitions_def=partitions))
    checks = [
        dg.AssetCheckSpec("no_duplicate_keys", asset=parent_key,
                          description="No company + id appears twice in the current-state table."),
        dg.AssetCheckSpec("matches_source_count", asset=parent_key,
                          description="Per company, current-state rows equal the source's $count over the loaded windows."),
    ]

    @dg.multi_asset(
        name=f"bc_{entity.table.removeprefix('bc_')}", specs=specs, check_specs=checks, partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(), pool=POOL, can_subset=False,
        description=f"Business Central {entity.entity_set} modified in the partition window(s), all companies.",
    )
    def _load(context: dg.AssetExecutionContext, business_central: BusinessCentralResource,
              warehouse: WarehouseResource):
        store = warehouse.open()
        windows = windows_for(context)
        client = business_central.client()
        try:
            companies = client.resolve_companies(business_central.companies)
            result = load_entity(context, entity, client, store, companies, windows)
            stats = client.http.stats
            for spec in result["tables"]:
                key = dg.AssetKey([GROUP, spec.name])
                yield dg.MaterializeResult(asset_key=key, metadata={
                    "dagster/row_count": result["rows"].get(spec.name, 0),
                    "rows": result["rows"].get(spec.name, 0),
                    "companies": ", ".join(c["name"] for c in companies),
                    "windows": len(windows),
                    "window_start": result["scope"].start.isoformat(),
                    "window_end": result["scope"].end.isoformat(),
                    "high_water_mark": result["high_water"] or "none",
                    "pages": result["pages"],
                    **stats.as_metadata("http_"),
                    "tokens_acquired": client.tokens.tokens_acquired,
                    "duration_seconds": round(result["seconds"], 2),
                })
            parent = result["tables"][0]
            duplicates = store.duplicate_keys(parent)
            yield dg.AssetCheckResult(check_name="no_duplicate_keys", asset_key=parent_key, passed=duplicates == 0,
                                      metadata={"duplicate_keys": duplicates})
            yield _count_check(entity, parent, client, store, companies, result["scope"].end)
        finally:
            client.close()

    return _load


def build_business_central(cfg: BusinessCentralConfig, warehouse_kind: str) -> dg.Definitions:
    partitions = partitions_def(cfg.partitions)
    assets = [_entity_assets(entity, partitions, warehouse_kind) for entity in catalog.select(cfg.entities)]
    job = dg.define_asset_job(
        JOB, selection=dg.AssetSelection.groups(GROUP), partitions_def=partitions,
        description="Load every Business Central entity for a window into the warehouse.",
    )
    schedule = settled_window_schedule(job, cfg.partitions, partitions, name=f"{JOB}_schedule")
    return dg.Definitions(assets=assets, jobs=[job], schedules=[schedule])
