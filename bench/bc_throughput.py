"""Business Central → DuckDB throughput and memory, side by side in one run.

    .venv/bin/python bench/bc_throughput.py [--gl-entries-per-company 500000] [--page-size 10000]

Starts `mlconnector sandbox` as its own process with 2 companies of G/L entries (1,000,000 by
default), then measures, each in a fresh child process:
  (a) product: the Dagster job's G/L asset (with dimension set lines) into DuckDB, one run over
      the whole history (single-run backfill), and
  (b) bare:    an httpx loop that pages through the same URLs and discards the rows.
Prints records/s and peak RSS for both and the ratio a/b.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from harness import (
    HISTORY_DAYS,
    compare,
    history,
    parser,
    print_results,
    report_child,
    rows_loaded,
    run_job_over_history,
    start_sandbox,
)

PORT = 47891


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


def child(path: str, data_dir: Path, page_size: int) -> None:
    report_child((run_product if path == "product" else run_bare)(data_dir, page_size))


def main() -> None:
    options = parser(page_size=10_000)
    options.add_argument("--gl-entries-per-company", type=int, default=500_000)
    args = options.parse_args()
    if args.child:
        return child(args.child, args.data_dir, args.page_size)
    data_dir = Path(tempfile.mkdtemp(prefix="mlconnector-bench-"))
    product, bare = compare(__file__, start(data_dir, args.gl_entries_per_company), data_dir, args.page_size)
    print_results(
        f"Business Central G/L entries (+ dimension set lines), page size {args.page_size:,}, 2 companies",
        ("(a) product asset → DuckDB", product),
        ("(b) bare httpx loop, discard", bare),
        "requests",
        target="target ≥ 0.80; peak RSS of (a) target < 500 MB",
    )


if __name__ == "__main__":
    main()
