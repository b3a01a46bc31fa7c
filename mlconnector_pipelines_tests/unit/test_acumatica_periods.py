"""Acumatica's financial periods for a posting date, where the financial year is not the calendar year.

The sandbox keeps calendar years; these years are served by a stand-in for the client's one read
(`FinancialPeriod/<year>` with its Details), as an Acumatica site with a July-June year answers it.
"""

from __future__ import annotations

from datetime import date

import pytest

from mlconnector_pipelines.systems.acumatica.target import AcumaticaJournalTarget


def _months(first: date, count: int = 12) -> list[tuple[date, date]]:
    spans, start = [], first
    for _ in range(count):
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        spans.append((start, end))
        start = end
    return spans


class _Site:
    """FinancialPeriod years as a July-June site numbers them (by the year they end in: `belongs to next year`),
    each period's end date the next one's first day, every period open but June and December 2026."""

    def __init__(self):
        self.asked: list[str] = []

    def record(self, entity: str, keys, expand=()):
        assert entity == "FinancialPeriod"
        year = int(keys[0])
        self.asked.append(keys[0])
        details = [
            {"FinancialPeriodID": f"{n:02d}{year}", "StartDate": f"{start}T00:00:00", "EndDate": f"{end}T00:00:00",
             "Status": "Closed" if start in (date(2026, 12, 1), date(2026, 6, 1)) else "Open"}
            for n, (start, end) in enumerate(_months(date(year - 1, 7, 1)), start=1)
        ]  # fmt: skip
        return {"FinancialYear": str(year), "Details": details}


@pytest.mark.parametrize(
    ("posting", "problem"),
    [
        (date(2026, 3, 31), None),
        (date(2026, 11, 30), None),
        (date(2026, 12, 15), "062027, which is Closed"),
        # The year's first day: June's end date (exclusive) is 1 July, but 1 July is July's period, of the next
        # year (once taken for June of the year before, whose closing then refused a valid journal).
        (date(2026, 7, 1), None),
    ],
)
def test_a_posting_date_finds_its_period_in_a_financial_year_that_is_not_the_calendar_year(posting, problem):
    """Half the year's dates looked only in the calendar year's FinancialPeriod (2026 for 30 November 2026, which
    a July-June site files under 2027) and were refused as covered by no period, though it was open."""
    target = AcumaticaJournalTarget.__new__(AcumaticaJournalTarget)
    target.client, target._periods = _Site(), {}
    reasons = [p.reason for p in target._period_problems(posting)]
    if problem is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and problem in reasons[0], reasons
