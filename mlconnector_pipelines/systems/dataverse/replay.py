"""Replay of the Sales → BC flow: a deal is finished by reading it from Sales again, mapped with today's
configuration (a product mapped since the refusal now maps), through the same steps as its run. A deal verified
in BC whose numbers never reached Sales (its write-back failed or never ran) is replayed too: its document is
found in BC and only the write-back is made."""

from __future__ import annotations

from ...audit.store import DocumentRecord, open_audit_store
from ...core.errors import ConnectorError
from ..business_central.resource import BusinessCentralResource
from .config import DataverseConfig
from .resource import DataverseResource
from .sales import DealNotReady, parse_partition
from .to_business_central import CUSTOMER_FLOW, SalesSync, open_sales_sync


def open_sync(config, cfg: DataverseConfig, *, run_id: str, progress=print) -> SalesSync:
    sync = cfg.sales_to_business_central
    if sync is None or config.business_central is None:
        raise ConnectorError("dataverse.sales_to_business_central and business_central must both be configured")
    return open_sales_sync(
        sync,
        DataverseResource.from_section(cfg, config.data_dir).client(),
        BusinessCentralResource.from_section(config.business_central, config.data_dir).client(),
        open_audit_store(config.audit, config.data_dir),
        run_id=run_id,
        progress=progress,
    )


def replay_deal(
    config, cfg: DataverseConfig, record: DocumentRecord, *, run_id: str, dry_run: bool
) -> tuple[str, bool]:
    engine = open_sync(config, cfg, run_id=run_id)
    try:
        if record.flow == CUSTOMER_FLOW:  # a customer is made again by its deal's replay
            state = engine.audit.document(record.id).state
            return (f"customer {state}" + ("" if state == "verified" else ": replayed with its deal"), True)
        entity_set, record_id = parse_partition(record.partition)
        if dry_run:
            found = engine.documents.find(engine.audit.plan(record))
            where = f"in BC as {found.number}" if found else "not in BC yet"
            if record.state == "verified":
                where += "; its numbers not yet written back to Sales"
            return (
                f"would read {entity_set}({record_id}) from Sales again and finish it ({record.state}; {where})",
                True,
            )
        try:
            return (engine.run(entity_set, record_id).summary(), True)
        except DealNotReady as exc:
            return (f"not finished: {exc}", False)
        except ConnectorError as exc:
            return (f"failed: {exc}", False)
    finally:
        engine.close()
