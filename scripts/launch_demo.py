"""Launches the demo's first runs through the running Dagster UI (scripts/dev calls this).

The last two weeks are loaded from Business Central (one run for the range) and yesterday from
SAP Business One and Acumatica; once Business Central is in the warehouse, the Looker figures
computed from it are materialized, and last week's marketplace fees are posted as a journal into
the F&O sandbox and as a released GL batch into the Acumatica sandbox. Last, an open Sales order
from the Dataverse sandbox becomes a BC sales order.
"""

import sys
import time
from datetime import UTC, datetime, timedelta

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def launch(
    client: DagsterGraphQLClient,
    job: str,
    partition: str | None = None,
    until: str | None = None,
    run_config: dict | None = None,
) -> str:
    if until:  # a range in one run, as a single-run backfill launches it
        tags = {"dagster/asset_partition_range_start": partition, "dagster/asset_partition_range_end": until}
    else:
        tags = {"dagster/partition": partition} if partition else None
    run_id = client.submit_job_execution(job, tags=tags, run_config=run_config)
    span = f" for {partition}{' … ' + until if until else ''}" if partition else ""
    print(f"launched {job}{span}: run {run_id[:8]} (see Runs in the UI)", flush=True)
    return run_id


def wait(client: DagsterGraphQLClient, run_id: str, what: str) -> bool:
    deadline = time.monotonic() + 600
    while (status := client.get_run_status(run_id)) not in FINISHED:
        if time.monotonic() > deadline:
            print(f"{what} is still running; carry on from the UI later", flush=True)
            return False
        time.sleep(2)
    if status is not DagsterRunStatus.SUCCESS:
        print(f"{what} ended {status.value}: open it in the UI to see why", flush=True)
        return False
    return True


def main(port: int) -> int:
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    last_monday = today - timedelta(days=today.weekday() + 7)  # the last week that has ended
    bc_run = launch(client, "business_central_to_warehouse", (today - timedelta(days=14)).isoformat(), yesterday)
    launch(client, "business_central_subscriptions")  # BC's change notifications, received by `mlconnector ingest`
    launch(client, "sap_business_one_to_warehouse", yesterday)
    launch(client, "acumatica_to_warehouse", yesterday)
    if not wait(client, bc_run, "the Business Central load"):
        return 0
    launch(client, "looker_gl_daily_summary", yesterday)
    launch(client, "looker_vendor_balances")
    fees = launch(client, "looker_fee_allocation", last_monday.isoformat())
    if not wait(client, fees, "the Looker fee allocation"):
        return 0
    # The sensors would post them within a minute; launched here so the demo ends with them.
    journals = {
        "F&O": launch(client, "finance_operations_fee_allocation_journal", last_monday.isoformat()),
        "Acumatica": launch(client, "acumatica_fee_allocation_journal", last_monday.isoformat()),
    }
    for system, run in journals.items():
        if wait(client, run, f"the {system} fee journal"):
            print(f"journal posted into the {system} sandbox (Assets → … → fee_allocation_journal)", flush=True)
    order = sales_order()
    if order is not None:
        config = {"entity_set": "salesorders", "record_id": order["salesorderid"]}
        run = launch(client, "sales_to_business_central", run_config={"ops": {"sync_deal": {"config": config}}})
        if wait(client, run, f"the Sales order {order['ordernumber']}"):
            print(f"Sales order {order['ordernumber']} is a BC sales order (its run's metadata has the number)")
    return 0


def sales_order() -> dict | None:
    """An open order in the Dataverse sandbox, converted from a quote, whose products all map to BC items."""
    import os
    from pathlib import Path

    import httpx

    ca = Path(os.environ.get("MLCONNECTOR_DATA_DIR", "data")) / "sandbox" / "ca.pem"
    with httpx.Client(base_url="https://127.0.0.1:47800", verify=str(ca), timeout=30) as http:
        orders = http.get("/_sandbox/dataverse/records/salesorders").json()
        lines = http.get("/_sandbox/dataverse/records/salesorderdetails").json()
    unmapped = {line["_salesorderid_value"] for line in lines if line.get("productnumber") == "DV-9001"}
    has_lines = {line["_salesorderid_value"] for line in lines}
    ready = (o for o in orders if o["statecode"] == 0 and o["salesorderid"] in has_lines - unmapped)
    return next(ready, None)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
