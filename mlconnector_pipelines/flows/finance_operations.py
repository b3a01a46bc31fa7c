"""Looker → Dynamics 365 F&O general journals: the F&O side of the journal flow (flows/journals.py)."""

from __future__ import annotations

import dagster as dg

from ..engine.journal import JournalSpec
from ..systems.finance_operations.client import SYSTEM
from ..systems.finance_operations.config import FinanceOperationsConfig, FinanceOperationsJournal
from ..systems.finance_operations.target import MAIN_ACCOUNT, FinanceOperationsJournalTarget, document_key
from ..systems.spec import FlowContext
from .journals import JournalFlow, build_journals

GROUP = "finance_operations"


def _dimensions(mapping: FinanceOperationsJournal, target: FinanceOperationsJournalTarget):
    """The configured dimensions in the ledger integration format's order (a dimension not in it is an error)."""
    order = [name for name in target.ledger_format() if name != MAIN_ACCOUNT]
    for setting, names in (("dimensions", mapping.dimensions), ("balancing.dimensions", mapping.balancing.dimensions)):
        unknown = sorted(set(names) - set(order))
        if unknown:  # a misspelt or foreign name was dropped from its line without a word
            from ..core.errors import ConfigError

            raise ConfigError(
                f"finance_operations.journals[{mapping.name}].{setting}: {', '.join(unknown)} not in the ledger "
                f"dimension format {'-'.join(target.ledger_format())}"
            )
    return [(name, mapping.dimensions[name]) for name in order if name in mapping.dimensions]


SPEC = JournalSpec(
    system=SYSTEM,
    company=lambda mapping: mapping.legal_entity,
    header=lambda mapping, when: {"journal_name": mapping.journal_name},
    document_key=document_key,
    dimensions=_dimensions,
)
FLOW = JournalFlow(spec=SPEC, group=GROUP, kind="dynamics365", open_target=lambda resource: resource.journal_target())


def build_finance_operations(cfg: FinanceOperationsConfig, ctx: FlowContext) -> dg.Definitions:
    looker = getattr(ctx.config, "looker", None) if ctx.config is not None else None
    audit = ctx.config.audit if ctx.config is not None else None
    from ..audit.config import AuditConfig

    return build_journals(FLOW, cfg.journals, looker, ctx.data_dir, audit or AuditConfig())
