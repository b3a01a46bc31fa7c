"""What sales reps do in the Sales app, through the same model methods the Web API's actions use.

Live mode and the admin API call these, so webhooks fire and change tracking sees the changes
exactly as for a client's own writes.
"""

from __future__ import annotations

import random

from .errors import DataverseError
from .models import DataverseModel

CITIES = (("Tacoma", "WA", "98402"), ("Madison", "WI", "53703"), ("Raleigh", "NC", "27601"))


def _pick(rows, rng: random.Random, test) -> dict:
    candidates = sorted((r for r in rows if test(r)), key=lambda r: r["versionnumber"])
    if not candidates:
        raise DataverseError(404, "", "No record is in a state for this action.")
    return rng.choice(candidates)


def win_opportunity(model: DataverseModel, rng: random.Random, opportunity_id: str | None = None) -> dict:
    if opportunity_id is None:
        opportunity_id = _pick(model.tables["opportunities"].values(), rng, lambda r: r["statecode"] == 0)[
            "opportunityid"
        ]
    today = model.now().date().isoformat()
    return model.win_opportunity(opportunity_id, {"subject": "Won by the rep", "actualend": today}, 3)


def convert_quote(model: DataverseModel, rng: random.Random, quote_id: str | None = None) -> dict:
    """The customer accepts a quote: a draft is activated first, then it is won and converted to an order."""
    if quote_id is None:
        quote_id = _pick(model.tables["quotes"].values(), rng, lambda r: r["statecode"] in (0, 1))["quoteid"]
    if model.get("quotes", quote_id)["statecode"] == 0:
        model.update("quotes", quote_id, {"statecode": 1, "statuscode": 2}, {})
    return model.convert_quote(quote_id, None, 4, model.now().date().isoformat())


def edit_account(model: DataverseModel, rng: random.Random, account_id: str | None = None, changes=None) -> dict:
    """The seed's live account is renamed and moves first; later edits touch another account's phone or city."""
    if account_id is None and not model.live_account_edited:
        account_id, changes = model.live_account, {"name": "Fabrikam Outdoor Group"}
        city, state, postal = CITIES[0]
        changes |= {"address1_line1": "1200 Commerce Street", "address1_city": city}
        changes |= {"address1_stateorprovince": state, "address1_postalcode": postal}
        model.live_account_edited = True
    if account_id is None:
        account_id = _pick(model.tables["accounts"].values(), rng, lambda r: r["statecode"] == 0)["accountid"]
    if changes is None:
        city, state, postal = rng.choice(CITIES)
        changes = rng.choice(
            (
                {"telephone1": f"+1 555 03{rng.randint(0, 99):02d}"},
                {"address1_city": city, "address1_stateorprovince": state, "address1_postalcode": postal},
            )
        )
    return model.update("accounts", account_id, dict(changes), {})


ACTIONS = {"win-opportunity": win_opportunity, "convert-quote": convert_quote, "edit-account": edit_account}
