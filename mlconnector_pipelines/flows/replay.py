"""The `replay_journals` job: `mlconnector replay` as a run in the UI (same engine, same audit store)."""

import dagster as dg
from pydantic import Field

from ..config import ConnectorConfig
from ..replay import NoAuditStore, replay


class ReplayConfig(dg.Config):
    flow: str | None = Field(None, description="Only this flow's documents (a journal asset's key, e.g. a/b_journal).")
    dry_run: bool = Field(False, description="Say what each unfinished document needs; write nothing.")


def build_replay(cfg: ConnectorConfig) -> dg.Definitions:
    @dg.op(description="Finish every document the audit store has not seen verified, each found by its key first.")
    def replay_unfinished(context: dg.OpExecutionContext, config: ReplayConfig):
        try:
            outcomes = replay(cfg, flow=config.flow, dry_run=config.dry_run, run_id=context.run_id)
        except NoAuditStore:  # the deployment's own configuration: no journal run has recorded anything yet
            context.log.info("nothing to replay: no run has recorded a document yet")
            yield dg.Output(None, metadata={"finished": 0, "dry_run": config.dry_run, "audit_store": "none yet"})
            return
        rows = ["| flow | partition | document | state | outcome |", "|---|---|---|---|---|"]
        for o in outcomes:
            d = o.document
            rows.append(f"| {d.flow} | {d.partition or '-'} | {d.document_key} | {d.state} | {o.action} |")
        table = dg.MetadataValue.md("\n".join(rows))
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise dg.Failure(
                description=f"{len(failed)} of {len(outcomes)} document(s) could not be finished:\n"
                + "\n".join(f"{o.document.document_key}: {o.action}" for o in failed),
                metadata={"documents": table},
            )
        yield dg.Output(None, metadata={"documents": table, "finished": len(outcomes), "dry_run": config.dry_run})

    @dg.job(
        name="replay_journals",
        description="Re-run failed or unfinished journals through the posting engine, exactly once.",
        tags={"kind": "replay"},
    )
    def replay_journals():
        replay_unfinished()

    return dg.Definitions(jobs=[replay_journals])
