"""State rules of the Sales tables: which states may be edited, and which state changes a PATCH may make.

Closing an opportunity or a quote takes its own message (WinOpportunity, LoseOpportunity, WinQuote,
CloseQuote, ConvertQuoteToSalesOrder); a PATCH of `statecode`/`statuscode` (the Web API's SetState)
makes the other changes. A closed order or invoice stays closed.
"""

from __future__ import annotations

from .errors import invalid_state, invalid_state_status
from .tables import Table

# Header tables whose other columns (and lines) may change only in these states.
EDITABLE_STATES = {"opportunities": {0}, "quotes": {0}, "salesorders": {0}, "invoices": {0}}
# Line table -> (header table, the line's lookup to it).
LINE_PARENTS = {
    "quotedetails": ("quotes", "quoteid"),
    "salesorderdetails": ("salesorders", "salesorderid"),
    "invoicedetails": ("invoices", "invoiceid"),
}
_CLOSED = {"opportunities": {1, 2}, "quotes": {2, 3}, "salesorders": {2, 3, 4}, "invoices": {2, 3}}
_BY_MESSAGE_ONLY = {
    "opportunities": ({1, 2}, "Close an opportunity with the WinOpportunity or LoseOpportunity message."),
    "quotes": ({2, 3}, "Close a quote with the WinQuote, CloseQuote or ConvertQuoteToSalesOrder message."),
}


def check_transition(table: Table, row: dict, state: int | None, status: int | None) -> tuple[int, int]:
    """The (statecode, statuscode) a PATCH asks for, or the documented refusal."""
    current = row["statecode"]
    if state is None:
        state = current
    if status is None:
        status = table.default_status(state)
    if state not in table.states or table.statuses.get(status, (None, None))[1] != state:
        raise invalid_state_status()
    if state == current and status == row["statuscode"]:
        return state, status
    closed_states, message = _BY_MESSAGE_ONLY.get(table.entity_set, (set(), ""))
    if state in closed_states and state != current:
        raise invalid_state(message)
    if current in _CLOSED.get(table.entity_set, set()) and table.entity_set != "opportunities":
        raise invalid_state()
    return state, status
