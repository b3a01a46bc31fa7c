"""F&O's ledger account display value: segments in the integration format's order, a delimiter inside a value
escaped with a backslash, trailing blank segments dropped; read back into the same account and dimensions."""

from __future__ import annotations

from mlconnector_pipelines.systems.finance_operations.target import FinanceOperationsJournalTarget


def _target(delimiter: str = "-") -> FinanceOperationsJournalTarget:
    target = FinanceOperationsJournalTarget.__new__(FinanceOperationsJournalTarget)  # no environment to read
    target._format, target._delimiter = ["MainAccount", "BusinessUnit", "CostCenter", "Department"], delimiter
    return target


def test_a_value_holding_the_delimiter_is_escaped_and_reads_back_as_written():
    target = _target()
    text = target.display_value("618200", [("BusinessUnit", "00-2"), ("CostCenter", "001")])
    assert text == "618200-00\\-2-001"
    assert target.parse_display_value(text) == ("618200", (("BusinessUnit", "00-2"), ("CostCenter", "001")))


def test_blank_segments_are_left_out_both_ways():
    target = _target()
    assert target.display_value("220500", [("BusinessUnit", "002")]) == "220500-002"
    assert target.parse_display_value("220500-002") == ("220500", (("BusinessUnit", "002"),))
    assert target.parse_display_value("618200--003") == ("618200", (("CostCenter", "003"),))
