"""Where a long single-run backfill spends its time: the product's own work against Dagster's bookkeeping.

    .venv/bin/python bench/backfill_bookkeeping.py [--days 365] [--gl-entries 20000]

Starts `mlconnector sandbox` with `--days` of history, then runs `business_central_to_warehouse` (every BC
entity, one step each) over every day in one run, on a DagsterInstance with the shipped dagster.yaml
(SQLite storage, what `scripts/dev` uses) in a temp folder or, under `scripts/with-postgres`, on the
PostgreSQL storage of deploy/dagster-postgres.yaml (each as shipped, batched event writes included), and prints:
  - wall time from the first event to the last, and the product's own work: each step's time inside the
    product's code (reading, staging, swapping; its `duration_seconds`, summed), the rest being Dagster's;
  - events by type, events per partition, the bytes of event-log rows, and the time the event log took
    to store them (timed wrappers around the event log storage's `store_event` and `store_event_batch`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import ROOT, range_tags, start_sandbox

PORT = 47895


def main() -> None:
    import argparse

    options = argparse.ArgumentParser()
    options.add_argument("--days", type=int, default=365)
    options.add_argument("--gl-entries", type=int, default=20_000, help="G/L entries per company")
    args = options.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="mlconnector-backfill-bench-"))
    sandbox = start_sandbox(
        [
            *("--port", str(PORT), "--data-dir", str(data_dir)),
            *("--gl-entries", str(args.gl_entries), "--history-days", str(args.days), "--no-live"),
        ],
        f"https://127.0.0.1:{PORT}/_sandbox/health",
        data_dir / "sandbox/ca.pem",
    )
    try:
        figures = run(data_dir, args.days)
    finally:
        sandbox.terminate()
    print_figures(figures, args.days)


def run(data_dir: Path, days: int) -> dict:
    import dagster as dg

    from mlconnector_pipelines.config import parse_config, sandbox_profile
    from mlconnector_pipelines.definitions import build_definitions

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    raw = sandbox_profile(data_dir, f"https://127.0.0.1:{PORT}")
    raw.update(data_dir=str(data_dir / "product"), sap_business_one=None, looker=None)
    raw.update(finance_operations=None, acumatica=None, dataverse=None)
    raw["business_central"]["partitions"]["start"] = start.date().isoformat()
    raw["business_central"]["notifications"] = None
    job = build_definitions(parse_config(raw)).resolve_job_def("business_central_to_warehouse")
    home = data_dir / "dagster"
    home.mkdir()
    # The instance a deployment runs: the shipped dagster.yaml (SQLite), or under scripts/with-postgres
    # deploy/dagster-postgres.yaml; DAGSTER_HOME names it, as for every Dagster process.
    postgres = bool(os.environ.get("DAGSTER_PG_HOST"))
    shutil.copy(ROOT / ("deploy/dagster-postgres.yaml" if postgres else "dagster.yaml"), home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    storage = "PostgreSQL" if postgres else "SQLite"
    stored = {"seconds": 0.0, "bytes": 0, "calls": 0, "events": 0}
    storage_impl = instance.event_log_storage

    def timed(write, count):  # the event log's own cost, measured where it is paid
        def wrapper(events, *a, **k):
            began = time.perf_counter()
            try:
                return write(events, *a, **k)
            finally:
                stored["seconds"] += time.perf_counter() - began
                stored["calls"] += 1
                stored["events"] += len(count(events))
                stored["bytes"] += sum(len(dg.serialize_value(e)) for e in count(events))

        return wrapper

    storage_impl.store_event = timed(storage_impl.store_event, lambda e: [e])
    storage_impl.store_event_batch = timed(storage_impl.store_event_batch, list)
    began = time.monotonic()
    result = job.execute_in_process(instance=instance, tags=range_tags(start, end))
    wall = time.monotonic() - began
    assert result.success
    events = result.all_events
    own = _own_from_logs(instance, result.run_id)
    rows = sum(
        e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
        if "dagster/row_count" in e.materialization.metadata
    )
    return {
        "wall": wall,
        "own": own,
        "events": Counter(e.event_type_value for e in events),
        "stored": stored,
        "rows": rows,
        "materializations": len(result.get_asset_materialization_events()),
        "storage": storage,
    }


def _own_from_logs(instance, run_id: str) -> float:
    """Each entity logs its figures, `duration_seconds` among them, once its swap committed (flows/windowed.py)."""
    total = 0.0
    for record in instance.all_logs(run_id):
        message = record.user_message or ""
        if "duration_seconds" in message:
            try:
                total += float(message.split("duration_seconds")[1].split(",")[0].strip())
            except ValueError:
                continue
    return total


def print_figures(f: dict, days: int) -> None:
    events: Counter = f["events"]
    total = sum(events.values())
    print(f"\nBusiness Central, every entity, {days} daily windows in one run ({f['storage']} instance storage)")
    print(f"rows loaded (all tables)             {f['rows']:,}")
    print(f"wall, run start to end               {f['wall']:.1f} s")
    print(f"product's own work (steps, summed)   {f['own']:.1f} s")
    print(f"event log: storing events            {f['stored']['seconds']:.1f} s for {f['stored']['events']:,} events "
          f"in {f['stored']['calls']:,} writes ({f['stored']['bytes'] / 1e6:.1f} MB serialized)")  # fmt: skip
    print(f"events stored per partition          {f['stored']['events'] / days:.1f}")
    print(f"materializations                     {f['materializations']:,}")
    print(f"the run's events (planned ones are stored at its start, apart): {total:,}")
    for kind, count in events.most_common(8):
        print(f"  {kind:<34} {count:,}")
    ratio = f["stored"]["seconds"] / f["own"] if f["own"] else float("nan")
    print(f"\nevent log / own work: {ratio:.2f}   (target ≤ 1.0)")


if __name__ == "__main__":
    main()
