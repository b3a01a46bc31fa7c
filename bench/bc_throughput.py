"""Business Central → DuckDB throughput and memory, side by side in one run.

    .venv/bin/python bench/bc_throughput.py [--gl-entries-per-company 500000] [--page-size 10000]
        [--skip-dlt] [--dlt-file-format insert_values|jsonl|parquet]

Starts `mlconnector sandbox` as its own process with 2 companies of G/L entries (1,000,000 by
default), then measures, each in a fresh child process:
  (a) product: the Dagster job's G/L asset (with dimension set lines) into DuckDB, one run over
      the whole history (single-run backfill), and
  (b) bare:    an httpx loop that pages through the same URLs and discards the rows, and
  (c), (d) dlt: the tool a data engineer would pick instead, dlt's `rest_api` source reading the
      same URLs into DuckDB, with write_disposition append, then merge (key: company and id),
      each in its own virtual environment (bench/.venv-dlt, made by bench/dlt_venv.sh on first
      use) by bench/dlt_contender.py; `--skip-dlt` leaves them out.
Prints records/s and peak RSS for each and the ratios a/b, a/c and a/d.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    HISTORY_DAYS,
    ROOT,
    history,
    measure,
    parser,
    print_results,
    report_child,
    rows_loaded,
    run_job_over_history,
    start_sandbox,
)

PORT = 47891
DLT_PYTHON = ROOT / "bench/.venv-dlt/bin/python"


def start(data_dir: Path, per_company: int):
    return start_sandbox(
        [
            "--port",
            str(PORT),
            "--data-dir",
            str(data_dir),
            "--gl-entries",
            str(per_company),
            "--history-days",
            str(HISTORY_DAYS),
            "--no-live",
        ],
        f"https://127.0.0.1:{PORT}/_sandbox/health",
        data_dir / "sandbox/ca.pem",
    )


def run_product(data_dir: Path, page_size: int) -> dict:
    from mlconnector_pipelines.config import sandbox_profile

    start, _ = history()
    raw = sandbox_profile(data_dir, f"https://127.0.0.1:{PORT}")
    raw["data_dir"] = str(data_dir / "product")
    raw["business_central"].update({"entities": ["generalLedgerEntries"], "page_size": page_size})
    if os.environ.get("BENCH_DUCKDB_MEMORY"):  # default: the product's own
        raw["warehouse"] = {"duckdb_memory_limit": os.environ["BENCH_DUCKDB_MEMORY"]}
    raw["business_central"]["partitions"]["start"] = start.date().isoformat()
    result, seconds = run_job_over_history(raw, "business_central_to_warehouse")
    return {
        "records": rows_loaded(result, "bc_general_ledger_entries"),
        "seconds": seconds,
        "requests": int(result.run_figures["http_requests"]),
    }


def run_bare(data_dir: Path, page_size: int) -> dict:
    import httpx

    from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID

    start, end = history()
    base = f"https://127.0.0.1:{PORT}"
    ca = str(data_dir / "sandbox/ca.pem")
    began = time.monotonic()
    with httpx.Client(verify=ca, timeout=120) as http:
        token = http.post(
            f"{base}/{TENANT_ID}/oauth2/v2.0/token",
            data={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "client_credentials",
                "scope": "https://api.businesscentral.dynamics.com/.default",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Prefer": f"odata.maxpagesize={page_size}"}
        root = f"{base}/v2.0/{TENANT_ID}/production/api/v2.0"
        records = requests = 0
        for company in http.get(f"{root}/companies", headers=headers).json()["value"]:
            url = f"{root}/companies({company['id']})/generalLedgerEntries"
            params = {
                "$filter": f"lastModifiedDateTime ge {start:%Y-%m-%dT%H:%M:%S.000Z} and "
                f"lastModifiedDateTime lt {end:%Y-%m-%dT%H:%M:%S.000Z}",
                "$expand": "dimensionSetLines",
            }
            while url:
                body = http.get(url, params=params, headers=headers).json()
                requests += 1
                records += len(body["value"])
                url, params = body.get("@odata.nextLink"), None
    return {"records": records, "seconds": time.monotonic() - began, "requests": requests}


def measure_dlt(mode: str, data_dir: Path, page_size: int, file_format: str | None) -> dict:
    """bench/dlt_contender.py in .venv-dlt, a fresh process: dlt reads what the bare loop reads."""
    began = time.monotonic()
    from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID

    start, end = history()
    ca = str(data_dir / "sandbox/ca.pem")
    env = dict(os.environ, REQUESTS_CA_BUNDLE=ca, BENCH_BC_CLIENT_SECRET=CLIENT_SECRET)
    env.pop("CURL_CA_BUNDLE", None)  # the machine's bundle would win over the sandbox's CA
    env.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    output = subprocess.run(
        [
            str(DLT_PYTHON),
            str(ROOT / "bench/dlt_contender.py"),
            *("--mode", mode, "--base-url", f"https://127.0.0.1:{PORT}", "--ca", ca),
            *("--tenant-id", TENANT_ID, "--client-id", CLIENT_ID, "--page-size", str(page_size)),
            *("--start", f"{start:%Y-%m-%dT%H:%M:%SZ}", "--end", f"{end:%Y-%m-%dT%H:%M:%SZ}"),
            *(("--file-format", file_format) if file_format else ()),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir,  # so dlt finds no .dlt/ config folder but its own
        check=False,
    )
    if output.returncode:
        raise SystemExit(output.stderr[-4000:])
    return {**json.loads(output.stdout.strip().splitlines()[-1]), "process_wall_seconds": time.monotonic() - began}


def child(path: str, data_dir: Path, page_size: int) -> None:
    report_child((run_product if path == "product" else run_bare)(data_dir, page_size))


def main() -> None:
    options = parser(page_size=10_000)
    options.add_argument("--gl-entries-per-company", type=int, default=500_000)
    options.add_argument("--skip-dlt", action="store_true", help="measure the product and the bare loop only")
    options.add_argument(
        "--dlt-file-format",
        choices=("insert_values", "jsonl", "parquet"),
        help="dlt's loader file format (default: dlt's own for DuckDB, insert_values)",
    )
    args = options.parse_args()
    if args.child:
        return child(args.child, args.data_dir, args.page_size)
    if not args.skip_dlt:  # before the sandbox starts, so an install does not share its cores
        subprocess.run(["bash", str(ROOT / "bench/dlt_venv.sh")], check=True)
    data_dir = Path(tempfile.mkdtemp(prefix="mlconnector-bench-"))
    sandbox = start(data_dir, args.gl_entries_per_company)
    try:
        bare = measure(__file__, "bare", data_dir, args.page_size)
        product = measure(__file__, "product", data_dir, args.page_size)
        dlt = {
            mode: measure_dlt(mode, data_dir, args.page_size, args.dlt_file_format)
            for mode in ([] if args.skip_dlt else ["append", "merge"])
        }
    finally:
        sandbox.terminate()
    print_results(
        f"Business Central G/L entries (+ dimension set lines), page size {args.page_size:,}, 2 companies",
        ("(a) product asset → DuckDB", product),
        ("(b) bare httpx loop, discard", bare),
        "requests",
        target="target ≥ 0.80; peak RSS of (a) target < 500 MB",
        others=[(f"({'cd'[i]}) dlt rest_api → DuckDB, {mode}", f) for i, (mode, f) in enumerate(dlt.items())],
    )
    if dlt:
        print_dlt_notes(dlt)
        print_whole_processes(product, dlt)


def print_whole_processes(product: dict, dlt: dict[str, dict]) -> None:
    """Records/s over each child's whole life as the parent saw it: Dagster's start against dlt's."""
    mine = product["records"] / product["process_wall_seconds"]
    print(f"\nwhole processes: (a) product {product['process_wall_seconds']:.1f} s, {mine:,.0f} records/s")
    for mode, f in dlt.items():
        theirs = f["records"] / f["process_wall_seconds"]
        print(
            f"  dlt {mode:<6} {f['process_wall_seconds']:.1f} s, {theirs:,.0f} records/s; "
            f"product/dlt {mine / theirs:.2f}   (target ≥ 3)"
        )


def print_dlt_notes(dlt: dict[str, dict]) -> None:
    """What the dlt rows' seconds leave out (start-up), where their time went, and with what."""
    some = next(iter(dlt.values()))
    print(
        f"\ndlt {some['dlt_version']}, duckdb {some['duckdb_version']}, loader file format "
        f"{some['loader_file_format']}; its seconds above are the load (token, extract, normalize, load),"
        " as (a)'s and (b)'s are"
    )
    for mode, f in dlt.items():
        steps = ", ".join(f"{step} {f['steps'][step]:.1f}" for step in ("extract", "normalize", "load"))
        nested = ", ".join(f"{rows:,} {table}" for table, rows in f["nested_rows"].items())
        print(
            f"  {mode:<6} whole process {f['process_seconds']:.1f} s (start-up to pipeline ready "
            f"{f['setup_seconds']:.1f} s); steps s: {steps}; nested rows: {nested}"
        )


if __name__ == "__main__":
    main()
