"""SAP Business One → DuckDB throughput and logins, side by side in one run.

    .venv/bin/python bench/sap_throughput.py [--documents 20000] [--page-size 500]

Starts `mlconnector sandbox` (the Service Layer is served on port + 50, logins take 2 s as on
real servers), then measures, each in a fresh child process:
  (a) product: the `sap_business_one_to_warehouse` job, one run over the whole history, and
  (b) bare:    an httpx loop that logs in once and pages through the same entity sets.
Prints records/s, logins and peak RSS for both.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

from harness import (
    HISTORY_DAYS,
    compare,
    history,
    parser,
    print_results,
    report_child,
    run_job_over_history,
    start_sandbox,
)

PORT = 47893
SAP_PORT = PORT + 50
ENTITY_SETS = [
    "Invoices",
    "PurchaseInvoices",
    "PurchaseOrders",
    "JournalEntries",
    "IncomingPayments",
    "VendorPayments",
    "Items",
    "BusinessPartners",
    "ChartOfAccounts",
    "ProfitCenters",
]


def start(data_dir: Path, documents: int):
    return start_sandbox(
        [
            "--port",
            str(PORT),
            "--data-dir",
            str(data_dir),
            "--gl-entries",
            "10",
            "--sap-documents",
            str(documents),
            "--history-days",
            str(HISTORY_DAYS),
            "--no-live",
        ],
        f"https://127.0.0.1:{SAP_PORT}/_sandbox/health",
        data_dir / "sandbox/sap_business_one.pem",
    )


def logins(data_dir: Path) -> int:
    import httpx

    return httpx.get(
        f"https://127.0.0.1:{SAP_PORT}/_sandbox/sap_business_one/state",
        verify=str(data_dir / "sandbox/sap_business_one.pem"),
    ).json()["logins"]


def run_product(data_dir: Path, page_size: int) -> dict:
    from mlconnector_pipelines.config import sandbox_profile

    start, _ = history()
    raw = sandbox_profile(data_dir, f"https://127.0.0.1:{PORT}")
    raw["data_dir"] = str(data_dir / "product")
    raw["business_central"] = None
    raw["sap_business_one"].update({"page_size": page_size})
    raw["sap_business_one"]["partitions"]["start"] = start.date().isoformat()
    result, seconds = run_job_over_history(raw, "sap_business_one_to_warehouse")
    # A single-run backfill records one materialization per partition, all with the run's row count.
    rows = {
        e.asset_key: e.materialization.metadata["rows"].value
        for e in result.get_asset_materialization_events()
        if not e.asset_key.path[-1].endswith("_lines")
    }
    records = sum(rows.values())
    return {"records": records, "seconds": seconds}


def run_bare(data_dir: Path, page_size: int) -> dict:
    import httpx

    start, end = history()
    base = f"https://127.0.0.1:{SAP_PORT}/b1s/v1/"
    began = time.monotonic()
    records = 0
    with httpx.Client(base_url=base, verify=str(data_dir / "sandbox/sap_business_one.pem"), timeout=120) as http:
        http.post(
            "Login", json={"CompanyDB": "SBODEMOUS", "UserName": "manager", "Password": "sandbox-b1-password"}
        ).raise_for_status()
        for entity in ENTITY_SETS:
            url, params = (
                entity,
                {"$filter": f"UpdateDate ge '{start.date()}' and UpdateDate le '{(end - timedelta(days=1)).date()}'"},
            )
            while url:
                body = http.get(url, params=params, headers={"Prefer": f"odata.maxpagesize={page_size}"}).json()
                records += len(body["value"])
                url, params = body.get("odata.nextLink"), None
        http.post("Logout")
    return {"records": records, "seconds": time.monotonic() - began}


def child(path: str, data_dir: Path, page_size: int) -> None:
    before = logins(data_dir)
    figures = (run_product if path == "product" else run_bare)(data_dir, page_size)
    figures["logins"] = logins(data_dir) - before
    report_child(figures)


def main() -> None:
    options = parser(page_size=500)
    options.add_argument("--documents", type=int, default=20_000, help="per document type, and journal entries")
    args = options.parse_args()
    if args.child:
        return child(args.child, args.data_dir, args.page_size)
    data_dir = Path(tempfile.mkdtemp(prefix="mlconnector-sap-bench-"))
    product, bare = compare(__file__, start(data_dir, args.documents), data_dir, args.page_size)
    print_results(
        f"SAP Business One Service Layer, all 10 entity sets, page size {args.page_size}, 2 s logins",
        ("(a) product job → DuckDB", product),
        ("(b) bare httpx loop, discard", bare),
        "logins",
    )


if __name__ == "__main__":
    main()
