"""The `ping` job: the same connectivity table as `mlconnector ping`, as a run in the UI."""

import dagster as dg

from ..config import ConnectorConfig
from ..core.ping import render_line, render_markdown, render_table
from ..ping import run_pings


def build_connectivity(cfg: ConnectorConfig) -> dg.Definitions:
    @dg.op(description="Authenticate to each configured system and make one cheap read.", out=dg.Out(dg.Nothing))
    def ping_systems(context: dg.OpExecutionContext):
        results = run_pings(cfg, on_result=lambda result: context.log.info(render_line(result)))
        context.log.info("\n" + render_table(results))
        table = dg.MetadataValue.md(render_markdown(results))
        failed = [r.system for r in results if not r.ok]
        if failed:
            raise dg.Failure(
                description=f"not reachable or not authorised: {', '.join(failed)}", metadata={"results": table}
            )
        yield dg.Output(None, metadata={"results": table, "systems": len(results)})

    @dg.job(
        name="ping",
        description="Check credentials and connectivity of every configured system.",
        tags={"kind": "connectivity"},
    )
    def ping():
        ping_systems()

    return dg.Definitions(jobs=[ping])
