"""Windowed extraction of an ERP's entities into the warehouse, for any source.

A source supplies a `SourceSession` (companies, pages of a window, optional counts, figures for
the metadata) from its Dagster resource; this module turns its catalog into partitioned
multi-assets with change-log and current-state tables, checks, a job and a schedule.
"""

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from ..core.catalog import SourceEntity
from ..core.errors import ConnectorError, RecordError
from ..core.prefetch import read_ahead
from ..core.settings import PartitionConfig
from ..core.source import SourceSession
from ..core.types import exact_decimals
from ..core.windows import TimeWindow, assign_window_starts, at_or_after, utc_moments
from ..warehouse.base import ReplaceScope, Warehouse
from ..warehouse.schema import (
    COMPANY_ID,
    COMPANY_NAME,
    EXTRACTED_AT,
    PARENT_ID,
    PARENT_VERSION_ID,
    RUN_ID,
    VERSION_ID,
    WINDOW_START,
    TableSpec,
    column_name,
)
from .partitions import partition_windows, partitions_def, settled_window_schedule
from .reconcile import build_reconciliation, deletion_checks


@dataclass(frozen=True)
class WindowedSource:
    system: str  # "Business Central"
    group: str  # asset group and key prefix, e.g. "business_central"
    resource_key: str  # the resource whose .session() opens a SourceSession
    kind: str  # shown as a kind in the UI
    job_name: str
    one_step: bool = False  # True: all entities in one step (one session/login per run)


# Progress in the run's log: often enough to watch, rarely enough that a run of small pages is not
# spent writing log events (each is a row in Dagster's event log).
PROGRESS_EVERY_SECONDS = 10.0


@lru_cache(maxsize=4096)
def _col(source_field: str) -> str:
    return column_name(source_field)


def table_specs(entity: SourceEntity) -> list[TableSpec]:
    """The entity's table, then one per kind of line (lines follow their parent)."""
    parent = TableSpec(
        name=entity.table,
        key=(COMPANY_ID, _col(entity.key)),
        modified_column=_col(entity.modified_field),
        types={_col(f): t for f, t in entity.types.items()},
    )
    return [
        parent,
        *(
            TableSpec(
                name=child.table,
                key=(COMPANY_ID, PARENT_ID, _col(child.key)),
                modified_column=None,
                types={_col(f): t for f, t in child.types.items()},
                parent=parent,
            )
            for child in entity.children
        ),
    ]


def records_table(entity: SourceEntity, page: pa.Table | list[dict]) -> pa.Table:
    """A page as an Arrow table; parsed JSON objects are converted in C++ (numeric types promoted)."""
    if isinstance(page, pa.Table):
        return page
    try:
        return pa.Table.from_struct_array(pa.array(page))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"{entity.entity_set}: a field holds values of different JSON types on one page: {exc}"
        ) from None


def page_frames(
    entity: SourceEntity,
    records: pa.Table,
    *,
    company: dict,
    windows: list[TimeWindow],
    run_id: str,
    extracted_at: datetime,
) -> dict[str, pa.Table]:
    """One page of records -> an Arrow table per table (records, and their lines), with the house metadata columns.

    Lines are unnested from their list column without a Python loop per line.
    """
    key = pc.cast(records.column(entity.key), pa.string())
    modified = records.column(entity.modified_field)
    version = pc.binary_join_element_wise(key, pc.cast(modified, pa.string()), "@")
    window_starts = assign_window_starts(modified, windows)
    tables: dict[str, pa.Table] = {}
    for child in entity.children:
        if child.navigation not in records.column_names:
            continue
        lines = records.column(child.navigation).combine_chunks()
        flat = pc.list_flatten(lines)
        if len(flat) == 0 or not pa.types.is_struct(flat.type):
            continue
        owner = pc.list_parent_indices(lines)
        table = pa.Table.from_struct_array(flat)
        table = table.append_column(PARENT_ID, pc.take(key, owner))
        table = table.append_column(PARENT_VERSION_ID, pc.take(version, owner))
        table = table.append_column(WINDOW_START, pc.take(window_starts, owner))
        tables[child.table] = _finish(table, company, run_id, extracted_at)
    parent = records.drop_columns([c.navigation for c in entity.children if c.navigation in records.column_names])
    parent = parent.append_column(VERSION_ID, version).append_column(WINDOW_START, window_starts)
    return {entity.table: _finish(parent, company, run_id, extracted_at), **tables}


def _finish(table: pa.Table, company: dict, run_id: str, extracted_at: datetime) -> pa.Table:
    table = table.drop_columns([c for c in table.column_names if c.startswith("@odata") or c.startswith("odata.")])
    table = exact_decimals(table)
    table = table.rename_columns([c if c.startswith("_") else _col(c) for c in table.column_names])
    n = table.num_rows
    for name, value, kind in (
        (COMPANY_ID, company["id"], pa.string()),
        (COMPANY_NAME, company["name"], pa.string()),
        (EXTRACTED_AT, extracted_at, pa.timestamp("us", tz="UTC")),
        (RUN_ID, run_id, pa.string()),
    ):
        table = table.append_column(name, pa.repeat(pa.scalar(value, type=kind), n))
    return table


@dataclass
class EntityLoad:
    """What one entity's load wrote, per table and per partition window."""

    tables: list[TableSpec]
    scope: ReplaceScope
    rows: dict[str, int]  # per table
    rows_by_window: dict[str, Counter]  # table -> window start -> rows
    high_water_by_window: dict[datetime, datetime]  # window start -> latest modified moment (parent records)
    pages: int
    seconds: float


@contextmanager
def _noting(note: str) -> Iterator[None]:
    try:
        yield
    except RecordError as exc:  # the warehouse names the table, value, company and window; add the source
        exc.add_note(note)
        raise


def _naming(pages: Iterator, note: str) -> Iterator:
    """The pages, with errors noting which system, entity, company and window they came from."""
    try:
        yield from pages
    except ConnectorError as exc:
        exc.add_note(note)
        raise


@dataclass
class StagedEntity:
    """An entity's pages read and staged; `commit()` swaps them in (the warehouse's atomic replace)."""

    replace: AbstractContextManager  # the open `replace_windows` of this load
    note: str
    tables: list[TableSpec]
    scope: ReplaceScope
    rows: dict[str, int]
    rows_by_window: dict[str, Counter]
    high_water_by_window: dict[datetime, datetime]
    pages: int
    started: float

    def commit(self) -> EntityLoad:
        with _noting(self.note):
            self.replace.__exit__(None, None, None)
        return EntityLoad(
            tables=self.tables,
            scope=self.scope,
            rows=self.rows,
            rows_by_window=self.rows_by_window,
            high_water_by_window=self.high_water_by_window,
            pages=self.pages,
            seconds=time.monotonic() - self.started,
        )


def stage_entity(
    context: dg.AssetExecutionContext,
    system: str,
    entity: SourceEntity,
    session: SourceSession,
    warehouse: Warehouse,
    companies: list[dict],
    windows: list[TimeWindow],
) -> StagedEntity:
    """Read every company's window(s) page by page into a replace that is staged, not yet committed.

    Companies are read concurrently up to the session's `concurrent_companies`; this thread
    writes every page as it arrives. If reading fails, the replace is abandoned: nothing changes.
    """
    tables = table_specs(entity)
    by_name = {spec.name: spec for spec in tables}
    scope = ReplaceScope(tuple(c["id"] for c in companies), windows[0].start, windows[-1].end)
    extracted_at = datetime.now(UTC)
    rows_by_window = {spec.name: Counter() for spec in tables}
    high_water: dict[datetime, datetime] = {}
    modified_column = _col(entity.modified_field)
    pages = 0
    started = time.monotonic()
    note = f"while loading {system} {entity.entity_set}"
    replace = warehouse.replace_windows(tables, scope)
    with _noting(note):
        load = replace.__enter__()
    try:
        with _noting(note):
            span = f"[{scope.start.isoformat()}, {scope.end.isoformat()})"
            streams = [
                _naming(
                    session.pages(company["id"], entity, scope.start, scope.end),
                    f"while reading {system} {entity.entity_set} of company {company['name']} "
                    f"({company['id']}), modified in {span}",
                )
                for company in companies
            ]
            company_rows = [0] * len(companies)
            said_at = time.monotonic()
            for index, page in read_ahead(streams, workers=session.concurrent_companies):
                company = companies[index]
                if page is None:  # this company's pages are all in
                    context.log.info(
                        f"{entity.entity_set}: {company['name']}: {company_rows[index]:,} rows in "
                        f"[{scope.start.isoformat()}, {scope.end.isoformat()})"
                    )
                    continue
                pages += 1
                records = records_table(entity, page)
                if records.num_rows == 0:
                    continue
                try:
                    moved_on = at_or_after(records.column(entity.modified_field), windows[-1].end)
                    if pc.any(moved_on).as_py():
                        # Changed while this read went on: its new version is a later window's, which loads it.
                        context.log.info(
                            f"{entity.entity_set}: {pc.sum(moved_on).as_py()} record(s) of {company['name']} "
                            f"changed while being read (stamped at or after {windows[-1].end.isoformat()}): left "
                            "to the window of their new stamp"
                        )
                        records = records.filter(pc.invert(moved_on))
                    frames = page_frames(
                        entity,
                        records,
                        company=company,
                        windows=windows,
                        run_id=context.run_id,
                        extracted_at=extracted_at,
                    )
                except ValueError as exc:
                    raise RecordError(
                        f"{system} {entity.entity_set} of company {company['name']} ({company['id']}), "
                        f"modified in {span}: {exc}"
                    ) from None
                for table_name, frame in frames.items():
                    load.write(by_name[table_name], frame)
                    for entry in pc.value_counts(frame.column(WINDOW_START)).to_pylist():
                        rows_by_window[table_name][entry["values"]] += entry["counts"]
                # As moments: the stamps' text does not sort by time (`10:00:00Z` after `10:00:00.9Z`, offsets)
                parent = pa.table(
                    {
                        WINDOW_START: frames[entity.table].column(WINDOW_START),
                        modified_column: utc_moments(frames[entity.table].column(modified_column)),
                    }
                )
                for entry in parent.group_by(WINDOW_START).aggregate([(modified_column, "max")]).to_pylist():
                    window, latest = entry[WINDOW_START], entry[f"{modified_column}_max"]
                    high_water[window] = max(latest, high_water.get(window, latest))
                company_rows[index] += records.num_rows
                if time.monotonic() - said_at >= PROGRESS_EVERY_SECONDS:
                    said_at = time.monotonic()
                    context.log.info(f"{entity.entity_set}: {sum(company_rows):,} rows so far")
    except BaseException as exc:
        replace.__exit__(type(exc), exc, exc.__traceback__)  # the staged batches go; the old windows stay
        raise
    return StagedEntity(
        replace=replace,
        note=note,
        tables=tables,
        scope=scope,
        rows=load.rows_written,
        rows_by_window=rows_by_window,
        high_water_by_window=high_water,
        pages=pages,
        started=started,
    )


@dataclass
class SourceCounts:
    """The source's own count of a company's records over the range the count check compares."""

    by_company: dict[str, tuple[datetime, int]]  # company id -> (range start, records modified since, to `end`)
    end: datetime
    figures: dict  # the counting's own requests and token renewals


class _SourceCountsDuringSwaps:
    """The count check's source counts, asked while the entity's swap commits (on Acumatica, whose count
    is a scan of the range, that was a tenth of a backfill's time after the swap).

    The range starts at the earliest window the warehouse held before the swap, or at this load's first
    window if that is earlier: the swap loads nothing before it, so it is the range the warehouse holds
    after. The swap thread reads those windows just before it swaps (the warehouse is then its own); the
    step's thread waits for them and asks the source, while nothing else uses the session.
    """

    def __init__(self, session: SourceSession, store: Warehouse, companies: list[dict], checks: AbstractSet):
        self.session, self.store, self.companies, self.checks = session, store, companies, checks
        self._before: dict[str, Future] = {}  # entity -> ({company id: earliest window or None}, scope)

    def _wanted(self, keys: list[dg.AssetKey]) -> bool:
        return dg.AssetCheckKey(keys[0], "matches_source_count") in self.checks

    def _earliest(self, entity: SourceEntity) -> Future:
        return self._before.setdefault(entity.entity_set, Future())  # (atomic: either thread may come first)

    def before_swap(self, entity: SourceEntity, keys: list[dg.AssetKey], staged: StagedEntity) -> None:
        """In the swap thread, before `staged.commit()`."""
        if not self._wanted(keys):
            return
        earliest = self._earliest(entity)
        try:
            loaded = {c["id"]: self.store.loaded_from(staged.tables[0], c["id"]) for c in self.companies}
            earliest.set_result((loaded, staged.scope))
        except Exception as exc:
            earliest.set_exception(exc)

    def ask(self, entity: SourceEntity, keys: list[dg.AssetKey]) -> SourceCounts | Exception | None:
        """In the step's thread. A failure is returned, and raised by the check once the entity's swap has
        committed and its results are reported (as a failed duplicate-key query is)."""
        if not self._wanted(keys):
            return None
        try:
            loaded_from, scope = self._earliest(entity).result()
            before = self.session.run_metadata()
            by_company = {}
            for company in self.companies:
                earlier = loaded_from.get(company["id"])
                start = scope.start if earlier is None else min(earlier, scope.start)
                by_company[company["id"]] = (start, self.session.count(company["id"], entity, start, scope.end))
            return SourceCounts(by_company, scope.end, _figures_since(before, self.session.run_metadata()))
        except Exception as exc:
            return exc


def _count_check(
    source: WindowedSource,
    entity: SourceEntity,
    parent: TableSpec,
    warehouse: Warehouse,
    companies: list[dict],
    counted: SourceCounts | Exception,
) -> dg.AssetCheckResult:
    """Current state vs the source's own count over the loaded range, per company.

    Its metadata counts the check's own requests and token renewals (its `$count` calls).
    """
    if isinstance(counted, Exception):
        raise counted
    problems, details = [], {}
    severity = dg.AssetCheckSeverity.WARN
    end = counted.end
    for company in companies:
        if warehouse.loaded_from(parent, company["id"]) is None:
            continue  # nothing of it loaded, ever
        loaded_from, source_count = counted.by_company[company["id"]]
        current = warehouse.current_count(parent, company["id"], loaded_from, end)
        details[company["name"]] = {"source": source_count, "warehouse": current}
        if current < source_count:
            severity = dg.AssetCheckSeverity.ERROR
            problems.append(
                f"{company['name']}: {source_count - current} record(s) modified in "
                f"[{loaded_from.isoformat()}, {end.isoformat()}) are missing from the warehouse "
                "(a window in that range is not loaded, or rows were lost)"
            )
        elif current > source_count:
            problems.append(
                f"{company['name']}: the warehouse has {current - source_count} more record(s) than the "
                "source in that range (changed or deleted since): load the later windows"
            )
    return dg.AssetCheckResult(
        check_name="matches_source_count",
        asset_key=dg.AssetKey([source.group, entity.table]),
        passed=not problems,
        severity=severity,
        description="; ".join(problems) or "Current state matches the source's count.",
        metadata={"per_company": dg.MetadataValue.json(details), **counted.figures},
    )


def _figures_since(before: dict, after: dict) -> dict:
    """The request figures added between two readings of a session's run figures."""
    return {name: value - before.get(name, 0) for name, value in after.items() if isinstance(value, (int, float))}


def _specs(source: WindowedSource, entity: SourceEntity, partitions, warehouse_kind: str, counts: bool):
    parent_key = dg.AssetKey([source.group, entity.table])
    specs = [
        dg.AssetSpec(
            parent_key,
            description=f"{entity.description} Current state (latest version per "
            f"company and key); every version is in `{entity.table}_changes`.",
            group_name=source.group,
            kinds={source.kind, warehouse_kind},
            metadata={"source": f"{source.system} {entity.entity_set}", "dagster/table_name": entity.table},
            partitions_def=partitions,
        )
    ]
    for child in entity.children:
        specs.append(
            dg.AssetSpec(
                dg.AssetKey([source.group, child.table]),
                description=child.description,
                group_name=source.group,
                kinds={source.kind, warehouse_kind},
                deps=[parent_key],
                metadata={
                    "source": f"{source.system} {entity.entity_set}.{child.navigation}",
                    "dagster/table_name": child.table,
                },
                partitions_def=partitions,
            )
        )
    checks = [
        dg.AssetCheckSpec(
            "no_duplicate_keys",
            asset=parent_key,
            description="No company + key appears twice in the current-state table.",
        )
    ]
    if counts:
        checks.append(
            dg.AssetCheckSpec(
                "matches_source_count",
                asset=parent_key,
                description="Per company, current-state rows equal the source's count over the loaded windows.",
            )
        )
    return specs, checks


def _windowed_multi_asset(
    source: WindowedSource,
    entities: Sequence[SourceEntity],
    partitions,
    warehouse_kind: str,
    counts: bool,
    name: str,
    description: str,
):
    specs, checks = [], []
    for entity in entities:
        entity_specs, entity_checks = _specs(source, entity, partitions, warehouse_kind, counts)
        specs += entity_specs
        checks += entity_checks

    @dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=checks,
        partitions_def=partitions,
        description=description,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=source.group,
        can_subset=len(entities) > 1,
        required_resource_keys={source.resource_key, "warehouse"},
    )
    def _load(context: dg.AssetExecutionContext):
        store = context.resources.warehouse.open()
        windows = partition_windows(context)
        selected = context.selected_asset_keys
        selected_checks = context.selected_asset_check_keys
        session: SourceSession = getattr(context.resources, source.resource_key).session()

        def commit(entity: SourceEntity, keys: list[dg.AssetKey], staged: StagedEntity) -> tuple:
            """In the swap thread: the swap, then the duplicate-key query on what it committed, which thus stays
            off the path of the next entity's reading. (The count check's requests stay in the step's thread:
            its figures are the session's requests while it runs, which nothing else may share.)"""
            source_counts.before_swap(entity, keys, staged)
            loaded = staged.commit()
            if dg.AssetCheckKey(keys[0], "no_duplicate_keys") not in selected_checks:
                return loaded, None
            try:
                return loaded, store.duplicate_keys(loaded.tables[0])
            except Exception as exc:  # raised in the step once the entity's results are reported
                return loaded, exc

        def finish(entity: SourceEntity, keys: list[dg.AssetKey], committed: Future) -> Iterator:
            """An entity's results, once its swap has committed (and only then). The count check's source
            count is asked first, while the swap may still be committing."""
            requests = session.run_metadata()  # the run's so far, without this entity's count check
            counted = source_counts.ask(entity, keys)
            loaded, duplicates = committed.result()
            run_figures = {"pages": loaded.pages, **requests, "duration_seconds": round(loaded.seconds, 2)}
            for spec, key in zip(loaded.tables, keys, strict=True):
                if key in selected:
                    yield _materialization(context, key, spec, loaded, windows, companies, run_figures)
            if len(windows) > 1:
                rows = {f"{spec.name}_rows": loaded.rows.get(spec.name, 0) for spec in loaded.tables}
                _record_run_figures(context, entity, {**_run_scope(companies, windows), **rows, **run_figures})
            if isinstance(duplicates, Exception):
                raise duplicates
            if duplicates is not None:
                yield dg.AssetCheckResult(
                    check_name="no_duplicate_keys",
                    asset_key=keys[0],
                    passed=duplicates == 0,
                    metadata={"duplicate_keys": duplicates},
                )
            if counted is not None:
                yield _count_check(source, entity, loaded.tables[0], store, companies, counted)

        try:
            companies = session.companies()
            source_counts = _SourceCountsDuringSwaps(session, store, companies, selected_checks if counts else set())
            chosen = [(e, [dg.AssetKey([source.group, t.name]) for t in table_specs(e)]) for e in entities]
            yield from _commit_while_reading_next(
                [(entity, keys) for entity, keys in chosen if any(key in selected for key in keys)],
                lambda entity: stage_entity(
                    context, source.system, entity, session, store, companies, list(windows.values())
                ),
                commit,
                finish,
            )
        finally:
            session.close()

    return _load


def _commit_while_reading_next(chosen: list, stage, commit, finish) -> Iterator:
    """Stage each entity; `commit` (its swap, and what reads the result) runs in a worker thread while the next
    entity's pages are read (the swap holds the warehouse, the reads wait on the source). Swaps stay in order,
    one at a time; an entity's results are reported only once its swap has committed, and a swap under way
    when a later read fails still finishes and is reported before the failure."""
    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="swap") as swaps:
        try:
            for entity, keys in chosen:
                staged = stage(entity)
                if pending is not None:
                    done, pending = pending, None
                    yield from finish(*done)
                pending = (entity, keys, swaps.submit(commit, entity, keys, staged))
            if pending is not None:
                done, pending = pending, None
                yield from finish(*done)
        except BaseException as exc:
            if pending is not None:
                wait([pending[2]])  # never leave a swap running behind the step
                if pending[2].exception() is None and isinstance(exc, Exception):  # (not on GeneratorExit)
                    yield from finish(*pending)
            raise


def _window_figures(spec: TableSpec, loaded: EntityLoad, window: TimeWindow) -> dict:
    """A partition's own figures: its rows and, for a document table, the newest stamp it read."""
    figures: dict = {"dagster/row_count": loaded.rows_by_window[spec.name][window.start]}
    if spec.parent is None:
        latest = loaded.high_water_by_window.get(window.start)
        figures["high_water_mark"] = latest.isoformat(timespec="microseconds") if latest is not None else "none"
    return figures


def _window_bounds(window: TimeWindow) -> dict:
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


def _materialization(
    context,
    key: dg.AssetKey,
    spec: TableSpec,
    loaded: EntityLoad,
    windows: dict[str, TimeWindow],
    companies: list[dict],
    run_figures: dict,
) -> dg.MaterializeResult:
    """A run of one window carries that window's figures, its bounds and the run's; a range run gives each
    partition its own window's figures only. The run's (companies, windows, rows, requests, pages) are the
    run's tags, and a partition's bounds are its key's: repeated on each of a 365-day backfill's partitions
    they were a third of its event log."""
    if len(windows) == 1:
        (window,) = windows.values()
        return dg.MaterializeResult(
            asset_key=key,
            metadata={
                **_window_figures(spec, loaded, window),
                **_window_bounds(window),
                **_run_scope(companies, windows),
                **run_figures,
            },
        )
    for partition_key, window in windows.items():
        context.add_asset_metadata(_window_figures(spec, loaded, window), asset_key=key, partition_key=partition_key)
    return dg.MaterializeResult(asset_key=key)


def _run_scope(companies: list[dict], windows: dict[str, TimeWindow]) -> dict:
    """What a run read: its companies and how many windows."""
    return {"companies": ", ".join(c["name"] for c in companies), "windows": len(windows)}


def _record_run_figures(context, entity: SourceEntity, run_figures: dict) -> None:
    """A range run's request figures belong to the run: its tags, and its log."""
    context.log.info(f"{entity.entity_set}: " + ", ".join(f"{k} {v}" for k, v in run_figures.items()))
    context.instance.add_run_tags(
        context.run_id, {f"mlconnector/{name}": str(value) for name, value in run_figures.items()}
    )


def build_windowed(
    source: WindowedSource,
    entities: Sequence[SourceEntity],
    partitions_cfg: PartitionConfig,
    warehouse_kind: str,
    counts: bool = True,
) -> dg.Definitions:
    partitions = partitions_def(partitions_cfg)
    if source.one_step:
        assets = [
            _windowed_multi_asset(
                source,
                entities,
                partitions,
                warehouse_kind,
                counts,
                name=f"{source.group}_entities",
                description=f"{source.system} entities modified in the partition window(s), loaded in one step "
                "so one session serves the whole run.",
            )
        ]
    else:
        assets = [
            _windowed_multi_asset(
                source,
                [entity],
                partitions,
                warehouse_kind,
                counts,
                name=f"{source.group}_{entity.table}",
                description=f"{source.system} {entity.entity_set} modified in the partition window(s), all companies.",
            )
            for entity in entities
        ]
    job = dg.define_asset_job(
        source.job_name,
        # Its own assets only: the group may hold others partitioned otherwise (a journal posted from Looker).
        selection=dg.AssetSelection.assets(*assets)
        - dg.AssetSelection.checks(*deletion_checks(source.group, entities)),
        partitions_def=partitions,
        description=f"Load every {source.system} entity for a window into the warehouse.",
    )
    schedule = settled_window_schedule(job, partitions_cfg, partitions, name=f"{source.job_name}_schedule")
    loads = dg.Definitions(assets=assets, jobs=[job], schedules=[schedule])
    deletions = build_reconciliation(
        system=source.system,
        group=source.group,
        resource_key=source.resource_key,
        entities=entities,
        partitions_cfg=partitions_cfg,
    )
    return dg.Definitions.merge(loads, deletions)
