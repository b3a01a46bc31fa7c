"""`mlconnector replay` and `mlconnector trace`: finish what runs left unfinished; walk a posted line back.

Replay takes every document the audit store has not seen verified (a crashed run, an outcome that
was never resolved, a refusal whose reference data has since been fixed) and runs its stored plan
through the same engine: found by its natural key, only what is missing written, then verified.
Nothing here names a system: each document's system is found in the registry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from .audit.store import AuditStore, DocumentRecord, open_audit_store
from .core.errors import ConfigError, ConnectorError
from .engine.post import PostingEngine
from .engine.records import RecordSync
from .systems.registry import enabled_sections


@dataclass
class ReplayOutcome:
    document: DocumentRecord
    action: str  # what was done, or would be with --dry-run
    ok: bool


def _targets(cfg) -> dict[str, tuple[Any, Any]]:
    """(spec, section) by system title, for the systems that take documents."""
    return {spec.title: (spec, section) for spec, section in enabled_sections(cfg) if spec.posting_target}


class NoAuditStore(ConfigError):
    """No run has recorded anything where the configuration says the audit store is."""


def _existing_store(cfg) -> AuditStore:
    """The configured audit store, which a run must have made: opened at a data_dir no run used (another
    connector.yaml's), an empty one was created and every document was said to be verified."""
    if cfg.audit.store_url is None and not (cfg.data_dir / "audit.sqlite").exists():
        raise NoAuditStore(
            f"no audit store at {cfg.data_dir / 'audit.sqlite'}: no run has recorded anything with data_dir "
            f"{cfg.data_dir}. Is this the connector.yaml the runs use (--config, $MLCONNECTOR_CONFIG)?"
        )
    return open_audit_store(cfg.audit, cfg.data_dir)


def replay(cfg, *, flow: str | None = None, dry_run: bool = False, run_id: str | None = None) -> list[ReplayOutcome]:
    run_id = run_id or f"replay-{uuid.uuid4()}"
    audit = _existing_store(cfg)
    if flow is not None and flow not in (known := audit.flows()):  # a misspelt flow was "nothing to replay"
        audit.close()
        raise ConfigError(
            f"--flow {flow}: the audit store has no document of it (its flows: {', '.join(known) or 'none'})"
        )
    targets = _targets(cfg)
    own_replay = {name: (spec, section) for spec, section in enabled_sections(cfg) if spec.replay
                  for name in spec.replays}  # fmt: skip
    outcomes = []
    try:
        for record in audit.unfinished(flow):
            if record.flow not in own_replay and record.system not in targets:
                outcomes.append(ReplayOutcome(record, f"{record.system} is not configured: skipped", False))
                continue
            try:  # one document's failure (its system down, its flow's setup) is its own: the others go on
                outcomes.append(_replay_record(cfg, audit, record, targets, own_replay, dry_run, run_id))
            except ConnectorError as exc:
                outcomes.append(ReplayOutcome(audit.document(record.id), f"failed: {exc}", False))
    finally:
        audit.close()
    return outcomes


def _replay_record(cfg, audit: AuditStore, record: DocumentRecord, targets, own_replay, dry_run, run_id):
    if record.flow in own_replay:
        spec, section = own_replay[record.flow]
        action, ok = spec.replay(cfg, section, record, run_id, dry_run)
        return ReplayOutcome(audit.document(record.id), action, ok)
    spec, section = targets[record.system]
    target = spec.posting_target(section, cfg.data_dir, record.flow)
    try:
        return _replay_one(audit, target, record, dry_run, run_id)
    finally:
        target.close()


def _replay_one(audit: AuditStore, target, record: DocumentRecord, dry_run: bool, run_id: str) -> ReplayOutcome:
    plan = audit.plan(record)
    if dry_run and hasattr(target, "upsert"):
        pending = sum(1 for r in audit.line_records(record.id) if r.state != "verified")
        return ReplayOutcome(record, f"would sync {pending} of {len(plan.lines)} records ({record.state})", True)
    if dry_run:
        found = target.find(plan)
        where = (
            f"in {record.system} as {found.number} with {len(found.lines)} of {len(plan.lines)} lines"
            if found
            else f"not in {record.system} yet"
        )
        return ReplayOutcome(record, f"would finish ({record.state}; {where})", True)
    try:
        if hasattr(target, "upsert"):  # records kept equal by key, each on its own
            synced = RecordSync(target, audit, run_id=run_id).run(plan)
            return ReplayOutcome(synced.document, synced.summary(), True)
        result = PostingEngine(target, audit, run_id=run_id).run(plan, adjusts=record.adjusts)
    except ConnectorError as exc:
        return ReplayOutcome(audit.document(record.id), f"failed: {exc}", False)
    return ReplayOutcome(result.document, result.summary(), True)


def parse_reference(reference: str) -> tuple[str | None, str, int | None]:
    """`00601`, `usrt/00601` or `usrt/00601/3` (company / document number / line)."""
    parts = [p for p in reference.strip().split("/") if p]
    if not parts or len(parts) > 3:
        raise ConfigError(f"{reference!r}: give a document number, company/number, or company/number/line")
    if len(parts) == 1:
        return None, parts[0], None
    line = None
    if len(parts) == 3:
        if not parts[2].isdigit():
            raise ConfigError(f"{reference!r}: the line must be a number")
        line = int(parts[2])
    return parts[0], parts[1], line


def trace(cfg, reference: str) -> list[str]:
    """The chain from an ERP line back to the Looker row and the warehouse tables Looker read."""
    company, number, line_number = parse_reference(reference)
    audit = _existing_store(cfg)
    try:
        records = audit.by_number(number, company)
        if not records:
            raise ConfigError(f"no document numbered {number}{' in ' + company if company else ''} in the audit store")
        out: list[str] = []
        lineage = _Lineage(cfg)
        for record in records:
            out += _trace_document(audit, record, line_number, lineage)
        return out
    finally:
        audit.close()


def asset_graph(cfg):
    from .definitions import build_definitions

    return build_definitions(cfg).resolve_asset_graph()


class _Lineage:
    """The code location's lineage for one trace: built once, when first asked (per line, a 10,000-line journal's
    trace took minutes)."""

    def __init__(self, cfg):
        self.cfg = cfg

    @cached_property
    def graph(self):
        return asset_graph(self.cfg)

    @cache  # noqa: B019 - one trace's lineage, dropped with it
    def upstream(self, asset: str) -> list[str]:
        """The assets `asset` reads (e.g. the ERP tables a Looker query reads)."""
        from dagster import AssetKey

        key = AssetKey.from_user_string(asset)
        return sorted(k.to_user_string() for k in self.graph.get(key).parent_keys) if self.graph.has(key) else []


def _trace_document(audit: AuditStore, record: DocumentRecord, line_number: int | None, lineage: _Lineage) -> list[str]:
    out = [
        f"{record.system} {record.company} {record.document_number}: {record.document_key} ({record.state})",
        f"  posted by {record.flow}, partition {record.partition or '(none)'}, runs {record.first_run_id} … "
        f"{record.last_run_id}, {record.attempts} attempt(s)",
    ]
    lines = audit.line_records(record.id, [line_number] if line_number is not None else None)
    if line_number is not None and not lines:
        out.append(f"  no line {line_number} in this document")
    for entry in lines:
        line = entry.line
        out.append(f"  {line.describe()} “{line.text}” ({entry.state}, {entry.attempts} attempt(s))")
        if line.source is None:
            out.append(f"    {line.kind} line: computed by the mapping, from no single source row")
            continue
        source = line.source
        out.append(
            f"    ← row {source.row_number} of {source.query} ({source.origin}, run {source.run_id}"
            f"{', window ' + source.window_start if source.window_start else ''}): {source.values}"
        )
        upstream = lineage.upstream(source.query)
        if upstream:
            out.append(f"    ← which read the warehouse tables of {', '.join(upstream)}")
    return out
