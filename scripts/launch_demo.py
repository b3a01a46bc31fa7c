"""Launches the demo's first runs through the running Dagster UI (scripts/dev calls this).

Yesterday's window is loaded from Business Central and SAP Business One; once Business Central
is in the warehouse, the Looker figures computed from it are materialized too.
"""

import sys
import time
from datetime import UTC, datetime, timedelta

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def launch(client: DagsterGraphQLClient, job: str, partition: str | None = None) -> str:
    run_id = client.submit_job_execution(job, tags={"dagster/partition": partition} if partition else None)
    print(
        f"launched {job}{' for ' + partition if partition else ''}: run {run_id[:8]} (see Runs in the UI)", flush=True
    )
    return run_id


def main(port: int) -> int:
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    bc_run = launch(client, "business_central_to_warehouse", yesterday)
    launch(client, "sap_business_one_to_warehouse", yesterday)
    deadline = time.monotonic() + 600
    while (status := client.get_run_status(bc_run)) not in FINISHED:
        if time.monotonic() > deadline:
            print("Business Central is still loading; materialize the Looker assets from the UI later", flush=True)
            return 0
        time.sleep(2)
    if status is not DagsterRunStatus.SUCCESS:
        print(f"the Business Central run ended {status.value}: open it in the UI to see why", flush=True)
        return 1
    launch(client, "looker_gl_daily_summary", yesterday)
    launch(client, "looker_vendor_balances")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
