"""Each entity's rules, found by name: `check_<entity>` for a PUT, `run_action` for an action, `check_delete`."""

from __future__ import annotations

from .ledger import (
    RELEASED,
    check_account,
    check_journaltransaction,
    check_subaccount,
    release_journaltransaction,
    subaccount_cd,
)
from .models import AcumaticaModel, Invalid, Operation, Problems
from .payables import (
    RELEASED_DOCUMENTS,
    check_bill,
    check_check,
    check_default,
    check_payment,
    check_stockitem,
    check_vendor,
    check_vendorclass,
)

__all__ = [
    "ACTIONS",
    "check_account",
    "check_bill",
    "check_check",
    "check_default",
    "check_delete",
    "check_journaltransaction",
    "check_payment",
    "check_stockitem",
    "check_subaccount",
    "check_vendor",
    "check_vendorclass",
    "run_action",
    "subaccount_cd",
]

# The actions of the Default endpoint the simulator runs, by entity.
ACTIONS = {"JournalTransaction": {"ReleaseJournalTransaction": release_journaltransaction}}


def run_action(model: AcumaticaModel, operation: Operation, row: dict | None, now) -> str | None:
    return ACTIONS[operation.entity][operation.action](model, row, now)


def check_delete(model: AcumaticaModel, entity_name: str, row: dict) -> None:
    """A released document or batch cannot be deleted."""
    if row.get("Status") in (*RELEASED, *RELEASED_DOCUMENTS):
        problems = Problems(record=["The document has been released and cannot be deleted."])
        raise Invalid(model.entities[entity_name], row, problems, inserting=False)
