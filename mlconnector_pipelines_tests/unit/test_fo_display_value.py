"""F&O's ledger account display value: segments in the integration format's order, a delimiter inside a value
escaped with a backslash, trailing blank segments dropped; read back into the same account and dimensions."""

from __future__ import annotations

import pytest

from mlconnector_pipelines.core.errors import ConfigError
from mlconnector_pipelines.systems.finance_operations.target import FinanceOperationsJournalTarget, segment_delimiter


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


@pytest.mark.parametrize(
    ("answered", "characters"),
    [
        ("Hyphen", "-"),  # F&O: the DimensionSegmentDelimiter enum member's name
        ("Period", "."),
        ("DoubleBar", "||"),
        ("Microsoft.Dynamics.DataEntities.DimensionSegmentDelimiter'Tilde'", "~"),
        ("-", "-"),  # the characters themselves, as another server may answer
        ("..", ".."),
        (None, "-"),
    ],
)
def test_the_segment_delimiter_is_read_from_its_enum_name_or_its_characters(answered, characters):
    assert segment_delimiter(answered) == characters


def test_an_unknown_segment_delimiter_is_a_configuration_error_naming_it():
    with pytest.raises(ConfigError, match="Semicolon"):
        segment_delimiter("Semicolon")


@pytest.mark.parametrize("value", ["00--2", "A-", "-B"])
def test_a_two_character_delimiter_escapes_and_reads_back(value):
    """Each delimiter character inside a value is escaped: `A-` before `--` would otherwise read as `A` and `-7`."""
    target = _target("--")
    text = target.display_value("618200", [("BusinessUnit", value), ("CostCenter", "7")])
    assert text.split("--", 1)[0] == "618200"
    assert target.parse_display_value(text) == ("618200", (("BusinessUnit", value), ("CostCenter", "7")))


def test_a_value_holding_the_delimiter_reads_back_as_planned_whether_or_not_the_server_escapes_it():
    """Written `618200-A\\-1-001`; a server that answers `618200-A-1-001` (not escaping on read) split on every
    hyphen read BusinessUnit `A`, CostCenter `1`, and failed a correct journal's read-back."""
    from decimal import Decimal

    from mlconnector_pipelines.core.posting import PlannedLine

    target = _target()
    planned = PlannedLine(
        1, "618200", (("BusinessUnit", "A-1"), ("CostCenter", "001")), Decimal(1), Decimal(0), "USD", "t"
    )
    for answered in ("618200-A\\-1-001", "618200-A-1-001"):
        assert target.read_display_value(answered, planned) == ("618200", planned.dimensions)
    # Another text is read as it says, not as the plan hoped.
    assert target.read_display_value("618200-A-2", planned) == ("618200", (("BusinessUnit", "A"), ("CostCenter", "2")))
