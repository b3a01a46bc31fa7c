"""dlt as a contender: the same Business Central G/L entries into DuckDB with dlt's `rest_api` source.

Runs inside bench/.venv-dlt (made by bench/dlt_venv.sh), as its own child process, and never
imports the product. bench/bc_throughput.py starts it twice (append, merge) after the product and
the bare loop; by hand, against a running sandbox:

    BENCH_BC_CLIENT_SECRET=... bench/.venv-dlt/bin/python bench/dlt_contender.py --mode append \\
        --base-url https://127.0.0.1:47891 --tenant-id ... --client-id ... --ca DATA/sandbox/ca.pem \\
        --start 2026-11-08T00:00:00Z --end 2026-12-06T00:00:00Z --page-size 10000

It reads what the bare loop reads: a token from the sandbox's Entra endpoint (client credentials),
the companies, then each company's generalLedgerEntries with the same `$filter` window,
`$expand=dimensionSetLines` and `Prefer: odata.maxpagesize`, following `@odata.nextLink`. dlt
unnests the expanded lines into a nested table of its own, as it does by default. Prints one JSON
line: records (rows in the destination's G/L table), seconds (the load: token, then
`pipeline.run`, i.e. extract, normalize and load, the span the bare loop's and the product's figures
cover), process_seconds (the whole process: interpreter start, dlt's import, pipeline setup, the
load, counting), peak RSS and CPU time.
"""

from __future__ import annotations

import time

BEGAN = time.monotonic()  # before dlt's import: it counts in process_seconds

import argparse
import json
import os
import resource
import shutil
import tempfile
from pathlib import Path

TABLE = "general_ledger_entries"


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("append", "merge"), required=True)
    p.add_argument("--base-url", required=True, help="the sandbox, e.g. https://127.0.0.1:47891")
    p.add_argument("--tenant-id", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--ca", required=True, help="the sandbox's CA (<data_dir>/sandbox/ca.pem)")
    p.add_argument("--start", required=True, help="window start, UTC, e.g. 2026-11-08T00:00:00Z")
    p.add_argument("--end", required=True, help="window end (excluded), UTC")
    p.add_argument("--page-size", type=int, default=10_000)
    p.add_argument(
        "--primary-key",
        default="_companies_id,id",
        help="merge key, comma-separated (default: company and id; `id` alone merges the records that BC's "
        "Copy Company gave the same id in two companies, as the sandbox does)",
    )
    p.add_argument(
        "--file-format",
        choices=("insert_values", "jsonl", "parquet"),
        help="dlt's loader file format (default: dlt's own for DuckDB, insert_values)",
    )
    p.add_argument("--work-dir", type=Path, help="pipeline and DuckDB file here (default: a temp dir, removed)")
    return p.parse_args()


def process_age() -> float:
    """Seconds since this process started (Linux /proc), interpreter start-up included."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - BEGAN


def window_filter(start: str, end: str) -> str:
    """The bare loop's `$filter`: lastModifiedDateTime in [start, end), at millisecond precision."""
    from datetime import datetime

    def odata(stamp: str) -> str:
        return f"{datetime.fromisoformat(stamp.replace('Z', '+00:00')):%Y-%m-%dT%H:%M:%S.000Z}"

    return f"lastModifiedDateTime ge {odata(start)} and lastModifiedDateTime lt {odata(end)}"


def main() -> None:
    args = arguments()
    # dlt's requests session takes its CA from the environment (requests' merge_environment_settings,
    # where REQUESTS_CA_BUNDLE wins over a session's own `verify`): point it at the sandbox's CA.
    os.environ["REQUESTS_CA_BUNDLE"] = args.ca
    os.environ.pop("CURL_CA_BUNDLE", None)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no network here besides loopback
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix=f"bench-dlt-{args.mode}-"))
    try:
        figures = load(args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    figures.update(
        process_seconds=process_age(),
        # both ways: RUSAGE_CHILDREN would count worker processes if dlt started any
        peak_rss_mb=max(own.ru_maxrss, children.ru_maxrss) / 1024,
        peak_rss_children_mb=children.ru_maxrss / 1024,
        cpu_seconds=own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
    )
    print(json.dumps(figures))


def load(args: argparse.Namespace, work: Path) -> dict:
    import dlt
    import duckdb
    import requests
    from dlt.sources.helpers.requests import Client
    from dlt.sources.rest_api import rest_api_source

    work.mkdir(parents=True, exist_ok=True)
    pipeline = dlt.pipeline(
        pipeline_name=f"bc_gl_{args.mode}",
        pipelines_dir=str(work / "pipelines"),
        # the file is not named after the dataset: DuckDB would take "bc" as both a catalog and a schema
        destination=dlt.destinations.duckdb(str(work / "warehouse.duckdb")),
        dataset_name="bc",
    )
    # dlt's own retrying session (what rest_api makes when given none), counting the G/L pages the
    # way the bare loop counts its requests. (Not a session hook: RESTClient passes response hooks
    # with each request, and requests lets those replace the session's.)
    session = Client(raise_for_status=False).session
    pages = [0]
    send = session.send

    def counted_send(request, **kwargs):
        pages[0] += "/generalLedgerEntries" in request.url
        return send(request, **kwargs)

    session.send = counted_send
    setup_seconds = time.monotonic() - BEGAN

    began = time.monotonic()
    token = requests.post(
        f"{args.base_url}/{args.tenant_id}/oauth2/v2.0/token",
        data={
            "client_id": args.client_id,
            "client_secret": os.environ["BENCH_BC_CLIENT_SECRET"],
            "grant_type": "client_credentials",
            "scope": "https://api.businesscentral.dynamics.com/.default",
        },
        verify=args.ca,
        timeout=120,
    )
    token.raise_for_status()
    gl_entries: dict = {
        "name": TABLE,
        "endpoint": {
            "path": "companies({resources.companies.id})/generalLedgerEntries",
            "params": {"$filter": window_filter(args.start, args.end), "$expand": "dimensionSetLines"},
        },
        # each record carries its company, as the product's rows do: `_companies_id`
        "include_from_parent": ["id"],
        "write_disposition": args.mode,
    }
    if args.mode == "merge":
        gl_entries["primary_key"] = args.primary_key.split(",")
    source = rest_api_source(
        {
            "client": {
                "base_url": f"{args.base_url}/v2.0/{args.tenant_id}/production/api/v2.0/",
                "auth": {"type": "bearer", "token": token.json()["access_token"]},
                "headers": {"Prefer": f"odata.maxpagesize={args.page_size}"},
                "paginator": {"type": "json_link", "next_url_path": "['@odata.nextLink']"},
                "session": session,
            },
            "resource_defaults": {"endpoint": {"data_selector": "value"}},
            "resources": [
                # read for the company ids only, as the bare loop does; not loaded
                {"name": "companies", "endpoint": {"path": "companies"}, "selected": False},
                gl_entries,
            ],
        }
    )
    pipeline.run(source, loader_file_format=args.file_format).raise_on_failed_jobs()
    seconds = time.monotonic() - began

    with pipeline.sql_client() as sql:
        tables = sql.execute_sql(
            "select table_name from information_schema.tables where table_schema = %s", pipeline.dataset_name
        )
        rows = {name: sql.execute_sql(f'select count(*) from "{name}"')[0][0] for (name,) in tables}
    return {
        "mode": args.mode,
        "records": rows.get(TABLE, 0),
        "nested_rows": {k: v for k, v in rows.items() if k.startswith(f"{TABLE}__")},
        "requests": pages[0],
        "seconds": seconds,
        "setup_seconds": setup_seconds,  # module start to here: dlt's import, pipeline, session
        "steps": {s.step: (s.finished_at - s.started_at).total_seconds() for s in pipeline.last_trace.steps},
        "loader_file_format": args.file_format or pipeline.destination.capabilities().preferred_loader_file_format,
        "dlt_version": dlt.__version__,
        "duckdb_version": duckdb.__version__,
    }


if __name__ == "__main__":
    main()
