"""SAP Business One → DuckDB throughput and logins, side by side in one run.

    .venv/bin/python bench/sap_throughput.py [--documents 20000] [--page-size 500]

Starts `mlconnector sandbox` (the Service Layer is served on port + 50, logins take 2 s as on
real servers), then measures, each in a fresh child process:
  (a) product: the `sap_business_one_to_warehouse` job, one run over the whole history, and
  (b) bare:    an httpx loop making the product's requests (a login per company database, pages by key)
               and discarding the rows.
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
    rows_loaded,
    run_job_over_history,
    start_sandbox,
)

PORT = 47893
SAP_PORT = PORT + 50
# Entity set → its key (what the product pages by), in the product's catalog order.
ENTITY_SETS = {
    "Invoices": "DocEntry",
    "PurchaseInvoices": "DocEntry",
    "PurchaseOrders": "DocEntry",
    "JournalEntries": "JdtNum",
    "IncomingPayments": "DocEntry",
    "VendorPayments": "DocEntry",
    "Items": "ItemCode",
    "BusinessPartners": "CardCode",
    "ChartOfAccounts": "Code",
    "ProfitCenters": "CenterCode",
}
COMPANY_DBS = ("SBODEMOUS", "SBODEMOCA")  # the sandbox profile loads both


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
    raw["dataverse"] = None  # its Sales → BC flow needs Business Central
    raw["sap_business_one"].update({"page_size": page_size})
    raw["sap_business_one"]["partitions"]["start"] = start.date().isoformat()
    result, seconds = run_job_over_history(raw, "sap_business_one_to_warehouse")
    # A range run gives each partition's materialization its own window's rows (harness.rows_loaded).
    tables = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    records = sum(rows_loaded(result, table) for table in tables if not table.endswith("_lines"))
    return {"records": records, "seconds": seconds}


def run_bare(data_dir: Path, page_size: int) -> dict:
    """The requests the product makes, and nothing else: each company database logged into once, each entity set
    read by key ranges (`key gt <last>`, ordered by key, as a correct client must: `$skip` loses records that
    change while it pages), the rows discarded."""
    import httpx

    start, end = history()
    base = f"https://127.0.0.1:{SAP_PORT}/b1s/v1/"
    days = f"UpdateDate ge '{start.date()}' and UpdateDate le '{(end - timedelta(days=1)).date()}'"
    began = time.monotonic()
    records = 0
    for company in COMPANY_DBS:
        with httpx.Client(base_url=base, verify=str(data_dir / "sandbox/sap_business_one.pem"), timeout=120) as http:
            http.post(
                "Login", json={"CompanyDB": company, "UserName": "manager", "Password": "sandbox-b1-password"}
            ).raise_for_status()
            for entity, key in ENTITY_SETS.items():
                last = None
                while True:
                    where = days if last is None else f"{days} and {key} gt {_literal(last)}"
                    body = http.get(
                        entity,
                        params={"$filter": where, "$orderby": key},
                        headers={"Prefer": f"odata.maxpagesize={page_size}"},
                    ).json()
                    records += len(body["value"])
                    if not body["value"] or not body.get("odata.nextLink"):
                        break
                    last = body["value"][-1][key]
            http.post("Logout")
    return {"records": records, "seconds": time.monotonic() - began}


def _literal(value) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


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
