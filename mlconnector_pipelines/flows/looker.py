"""Looker queries and saved Looks as assets: `looker/<name>` → warehouse table `looker_<name>`.

Each configured query is one asset. Partitioned queries fill a date filter with their window;
the rest are replaced whole. A scheduled-plan delivery (received by `mlconnector ingest`)
materializes its asset from the delivered rows, through a sensor with one run per delivery.
"""

import json
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from pydantic import Field

from ..core.errors import ConfigError
from ..core.windows import local_to_utc_micros, one_moment
from ..ingest.store import Delivery, DeliveryStore, open_delivery_store
from ..systems.looker.client import SYNC_ROW_CAP, LookerClient, LookerField, QuerySpec, with_filters
from ..systems.looker.config import LookerConfig, LookerQueryConfig
from ..systems.looker.resource import LookerResource
from ..warehouse.io_manager import TABLE_METADATA
from ..warehouse.resource import WarehouseResource
from ..warehouse.schema import (
    DATE_TIME_ZONES,
    EXTRACTED_AT,
    ROW_NUMBER,
    RUN_ID,
    SOURCE,
    WINDOW_START,
    ColumnType,
    TableSpec,
    column_name,
)
from .partitions import partitions_def, settled_window_schedule

GROUP = "looker"
DELIVERIES_JOB = "looker_deliveries"
DELIVERIES_SENSOR = "looker_scheduled_plan_deliveries"
# Looker's date filter grammar: "A to B" includes A and excludes B.
_FILTER_FORMAT = {"hourly": "%Y/%m/%d %H:%M", "daily": "%Y/%m/%d", "weekly": "%Y/%m/%d", "monthly": "%Y/%m/%d"}


class LookerRunConfig(dg.Config):
    delivery_id: str | None = Field(
        None, description="Materialize from this stored scheduled-plan delivery instead of querying Looker."
    )


def asset_key(query: LookerQueryConfig) -> dg.AssetKey:
    return dg.AssetKey([GROUP, query.name])


def upstream_keys(query: LookerQueryConfig) -> list[dg.AssetKey]:
    return [dg.AssetKey.from_user_string(u) for u in query.upstream]


def table_name(query: LookerQueryConfig) -> str:
    return f"looker_{query.name}"


def window_filter(cadence: str, start: datetime, end: datetime) -> str:
    fmt = _FILTER_FORMAT[cadence]
    return f"{start.strftime(fmt)} to {end.strftime(fmt)}"


def result_frame(
    rows: list[dict],
    fields: list[str],
    types: dict[str, ColumnType],
    *,
    window_start: datetime | None,
    extracted_at: datetime,
    run_id: str,
    source: str,
    first_row: int = 1,
    timezone: str = "UTC",
    unconverted: Collection[str] = (),
) -> pd.DataFrame:
    """Rows keyed by Looker field name → a frame with warehouse column names and house metadata.

    `timezone`: the zone the query ran in, whose wall-clock time Looker writes its date-times in;
    `unconverted`: the date-time columns Looker does not convert (see looker_moments)."""
    unknown = sorted({key for row in rows for key in row} - set(fields))
    if unknown:
        raise ConfigError(f"Looker returned field(s) {', '.join(unknown)} that the query does not select")
    frame = pd.DataFrame.from_records(rows, columns=fields)
    frame.columns = [column_name(f) for f in fields]
    shown_in = {}
    for column, column_type in types.items():
        if column_type is ColumnType.BOOLEAN and column in frame:  # yesno fields arrive as "Yes"/"No"
            frame[column] = frame[column].map({"Yes": True, "No": False, True: True, False: False})
        elif column_type in (ColumnType.DECIMAL, ColumnType.DOUBLE) and column in frame:
            frame[column] = frame[column].map(exact_text)  # the warehouse casts the text: no float on the way
        elif column_type is ColumnType.TIMESTAMP and column in frame:
            shown_in[column] = "UTC" if column in unconverted else timezone
            if column not in unconverted:
                frame[column] = looker_moments(frame[column], timezone)
    frame = frame.replace({"": None})  # an empty CSV cell is a missing value, not a zero-length number
    frame[WINDOW_START] = window_start
    frame[EXTRACTED_AT] = extracted_at
    frame[RUN_ID] = run_id
    frame[SOURCE] = source
    frame[DATE_TIME_ZONES] = json.dumps(shown_in, sort_keys=True)
    frame[ROW_NUMBER] = pd.Series(range(first_row, first_row + len(frame)), index=frame.index, dtype="int64")
    return frame


def looker_moments(values: pd.Series, timezone: str) -> pd.Series:
    """Looker's date-times (naive text, wall-clock time in the query's zone) as the UTC moments they name.

    Looker converts a time dimension from the database's zone into the query's `query_timezone` (or,
    for a query naming none, the user's or the instance's zone) and writes it without an offset; read
    as UTC it would be off by the zone's offset. A wall-clock time a DST change makes ambiguous takes
    its later reading (core.windows). Dates are not moments and never come here. A field whose LookML
    says `convert_tz: no` is written as the database holds it, unconverted: the caller leaves it out
    (`unconverted`), and it lands as it is, read as UTC like every naive stamp.
    """
    try:
        parsed = pd.to_datetime(values.replace({"": None}), format="ISO8601")
    except pd.errors.OutOfBoundsDatetime:  # 9999-12-31 ("no end"): past pandas' nanoseconds, so one by one
        zone = ZoneInfo(timezone)
        return values.map(lambda value: one_moment(value, zone))
    if parsed.dt.tz is not None:  # text with an offset names its moment already
        return parsed.dt.tz_convert(UTC)
    if timezone == "UTC":
        return parsed.dt.tz_localize(UTC)
    present = parsed.notna().to_numpy()
    moments = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    local = parsed[present].to_numpy(dtype="datetime64[us]").astype("int64")
    moments[present] = pd.to_datetime(local_to_utc_micros(local, ZoneInfo(timezone)), unit="us", utc=True)
    return moments


def exact_text(value) -> str | None:
    """A number as the text that states it exactly: Decimal and int as written, text as sent."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double
    return str(value)


def _result_zone(query: LookerQueryConfig, spec: QuerySpec, client: LookerClient, delivery: Delivery | None) -> str:
    """The zone whose wall-clock time the result's date-times are written in: the one the query ran in.

    A query run from here ran in the zone it sent (`spec.query_timezone`: the partitions' zone, a saved
    Look's own, or `looker.timezone` for a Look that names none). A delivery ran in Looker's schedule:
    in the zone its query names if the payload says, else in the Look's, else in `looker.timezone`."""
    if delivery is None:
        return spec.query_timezone
    return delivery.detail.get("query_timezone") or (spec.query_timezone if query.look_id else client.timezone)


def _field_types(query: LookerQueryConfig, spec: QuerySpec, described: dict[str, LookerField]) -> dict[str, ColumnType]:
    missing = [f for f in spec.fields if f not in described]
    if missing:
        raise ConfigError(
            f"looker.queries[{query.name}]: field(s) {', '.join(missing)} are not in explore {spec.model}/{spec.view} "
            f"(it has: {', '.join(sorted(described)[:40])})"
        )
    return {column_name(f): described[f].column_type for f in spec.fields}


def _looker_asset(query: LookerQueryConfig, warehouse_kind: str, open_store: Callable[[], DeliveryStore]):
    partitions = partitions_def(query.partition) if query.partition else None
    table = table_name(query)
    source_text = f"Look {query.look_id}" if query.look_id else f"{query.model}/{query.explore}"
    checks = [
        dg.AssetCheckSpec(
            "not_truncated", asset=asset_key(query), description="The result did not stop at the configured row limit."
        ),
        dg.AssetCheckSpec(
            "has_rows",
            asset=asset_key(query),
            description="The query returned rows (none usually means filters or upstream data are off).",
        ),
    ]

    @dg.asset(
        key=asset_key(query),
        group_name=GROUP,
        kinds={"looker", warehouse_kind},
        partitions_def=partitions,
        deps=upstream_keys(query),
        pool=GROUP,
        check_specs=checks,
        io_manager_key="warehouse_io",
        description=(query.description or f"Looker {source_text}.")
        + f" Rows in `{table}`"
        + (
            f", replaced per {query.partition.cadence} window of {query.partition.field}."
            if query.partition
            else ", replaced whole on each materialization."
        ),
        metadata={
            TABLE_METADATA: table,
            "looker_source": source_text,
            **({"looker_fields": ", ".join(query.fields)} if query.fields else {}),
            **({"scheduled_plan_id": query.scheduled_plan_id} if query.scheduled_plan_id else {}),
        },
    )
    def _materialize(
        context: dg.AssetExecutionContext, config: LookerRunConfig, looker: LookerResource, warehouse: WarehouseResource
    ):
        client = looker.client()
        try:
            yield from _run(context, query, config, client, warehouse, open_store, table)
        finally:
            client.close()

    return _materialize


def _run(
    context,
    query: LookerQueryConfig,
    config: LookerRunConfig,
    client: LookerClient,
    warehouse: WarehouseResource,
    open_store: Callable[[], DeliveryStore],
    table: str,
):
    window = context.partition_time_window if query.partition else None
    filters = dict(query.filters)
    if window is not None:
        filters[query.partition.field] = window_filter(query.partition.cadence, window.start, window.end)
    base = (
        client.look_query(query.look_id)
        if query.look_id
        else QuerySpec(model=query.model, view=query.explore, fields=tuple(query.fields), sorts=tuple(query.sorts))
    )
    spec = with_filters(base, filters, query.limit)
    as_saved = bool(query.look_id) and not filters and spec.fits_one_call  # the Look itself is run
    if base.dropped and not as_saved and not config.delivery_id:
        raise ConfigError(
            f"looker.queries {query.name}: Look {query.look_id} uses {', '.join(base.dropped)}, which a query rebuilt "
            "with a partition filter, more filters or another limit cannot carry (it would return other rows than "
            "the Look). Run the Look as saved (no filters, no partition, a limit of at most 5,000), or write the query "
            "out in looker.queries with model, explore, fields and filters"
        )
    if query.partition is not None:  # the window filter is written in the partitions' own zone
        spec = replace(spec, query_timezone=query.partition.timezone)
    described = client.explore_fields(spec.model, spec.view)
    types = _field_types(query, spec, described)
    unconverted = {column_name(f) for f in spec.fields if not described[f].convert_tz}

    delivery = None
    if config.delivery_id:
        delivery = open_store().get(config.delivery_id)
        source = f"delivery {delivery.id}"
        batches = [delivery.rows]
        context.log.info(
            f"{query.name}: {len(delivery.rows):,} rows from scheduled-plan delivery {delivery.id} "
            f"received {delivery.received_at}"
        )
    elif as_saved:
        source, batches = "looker api", [client.look_rows(query.look_id, spec.limit)]
    else:
        source, batches = "looker api", client.rows(spec)

    zone = _result_zone(query, spec, client, delivery)
    spec_table = TableSpec(
        name=table,
        key=(),
        modified_column=None,
        types={**types, ROW_NUMBER: ColumnType.INTEGER, DATE_TIME_ZONES: ColumnType.STRING},
        snapshot=True,
    )
    extracted_at = datetime.now(UTC)
    window_start = window.start if window is not None else None
    rows = 0
    with warehouse.open().replace_snapshot(spec_table, window_start) as load:
        for batch in batches:
            load.write(
                spec_table,
                result_frame(
                    batch,
                    list(spec.fields),
                    types,
                    window_start=window_start,
                    extracted_at=extracted_at,
                    run_id=context.run_id,
                    source=source,
                    first_row=rows + 1,
                    timezone=zone,
                    unconverted=unconverted,
                ),
            )
            rows += len(batch)
            context.log.info(f"{query.name}: {rows:,} rows so far")

    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "rows": rows,
            "source": source,
            "looker_api_calls": client.http.stats.requests,
            "looker_query_calls": client.query_calls,
            "looker_query_tasks": client.query_tasks,
            "looker_logins": client.login.logins,
            **client.http.stats.as_metadata("http_"),
            **(
                {
                    "window_start": window.start.isoformat(),
                    "window_end": window.end.isoformat(),
                    "filter": filters[query.partition.field],
                }
                if window is not None
                else {}
            ),
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(column_name(f), types[column_name(f)].value, description=f) for f in spec.fields
                ]
            ),
        }
    )
    limit, fix = query.limit, "Raise `limit` or remove it."
    if delivery is not None:  # the limit the plan's query ran with, not this asset's
        limit, fix = delivery_limit(delivery.detail), "Schedule the delivery with 'All results' (or a higher limit)."
    truncated = limit is not None and rows >= limit
    yield dg.AssetCheckResult(
        check_name="not_truncated",
        passed=not truncated,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"The result reached the limit of {limit:,} rows it ran with; rows past it were not loaded. {fix}"
            if truncated
            else "The whole result was loaded."
        ),
        metadata={"rows": rows, "limit": limit or "none"},
    )
    yield dg.AssetCheckResult(
        check_name="has_rows",
        passed=rows > 0,
        severity=dg.AssetCheckSeverity.WARN,
        description="No rows: check the filters, and that the data the explore reads is loaded."
        if rows == 0
        else f"{rows:,} rows.",
    )


def delivery_limit(detail: dict) -> int | None:
    """The row limit a delivered result ran with: its plan query's `limit`; Looker's default of 5,000 when the
    payload names none (a schedule sends more only with 'All results', and then says -1). Unknown (None) for a
    delivery stored before the receiver kept it."""
    if "limit" not in detail:
        return None
    raw = detail["limit"]
    try:
        limit = int(str(raw)) if raw not in (None, "") else SYNC_ROW_CAP
    except ValueError:
        return SYNC_ROW_CAP
    return limit if limit > 0 else None


def _deliveries_sensor(
    queries: dict[str, LookerQueryConfig], op_names: dict[str, str], job, open_store: Callable[[], DeliveryStore]
):
    @dg.sensor(
        name=DELIVERIES_SENSOR,
        job=job,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Turns each scheduled-plan delivery stored by `mlconnector ingest` into one run that "
        "materializes its Looker asset from the delivered rows (run key = delivery id).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        entries = open_store().after(context.cursor, rows=False)  # the run reads the rows
        for _, delivery in entries:
            query = queries.get(delivery.target)
            if query is None:
                context.log.warning(f"delivery {delivery.id} is for {delivery.target!r}, which is no longer configured")
                continue
            op_name = op_names[query.name]
            yield dg.RunRequest(
                run_key=delivery.id,
                asset_selection=[asset_key(query)],
                run_config=dg.RunConfig(ops={op_name: LookerRunConfig(delivery_id=delivery.id)}),
                tags={
                    "mlconnector/delivery": delivery.id,
                    "mlconnector/scheduled_plan": str(delivery.detail.get("scheduled_plan_id")),
                },
            )
        if entries:
            context.update_cursor(entries[-1][0])

    return _sensor


def build_looker(cfg: LookerConfig, warehouse_kind: str, data_dir, ingest=None) -> dg.Definitions:
    def open_store() -> DeliveryStore:  # opened when a sensor ticks or a run starts, not when code loads
        return open_delivery_store(ingest, data_dir, "looker")

    assets, jobs, schedules, sensors, op_names = [], [], [], [], {}
    for query in cfg.queries:
        asset = _looker_asset(query, warehouse_kind, open_store)
        assets.append(asset)
        op_names[query.name] = asset.op.name
        job = dg.define_asset_job(
            f"looker_{query.name}",
            selection=[asset_key(query)],
            partitions_def=asset.partitions_def,
            description=f"Materialize looker/{query.name} from the Looker API.",
        )
        jobs.append(job)
        if query.partition is not None:
            schedules.append(
                settled_window_schedule(
                    job,
                    query.partition,
                    asset.partitions_def,
                    name=f"looker_{query.name}_schedule",
                    upstream=upstream_keys(query),
                )
            )
    delivered = {q.name: q for q in cfg.queries if q.scheduled_plan_id}
    if delivered:
        job = dg.define_asset_job(
            DELIVERIES_JOB,
            selection=[asset_key(q) for q in delivered.values()],
            description="Materialize Looker assets from scheduled-plan deliveries.",
        )
        jobs.append(job)
        sensors.append(_deliveries_sensor(delivered, op_names, job, open_store))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors)
