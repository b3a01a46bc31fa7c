"""Looker rows → journal lines: exact amounts, rounding shown and booked, rows that cannot be mapped named."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from mlconnector_pipelines.core.errors import ConfigError
from mlconnector_pipelines.core.journal_mapping import JournalMapping, ValueSource
from mlconnector_pipelines.core.posting import SourceRow
from mlconnector_pipelines.engine.journal import JournalSpec, LookerRows, build_plan
from mlconnector_pipelines.engine.post import plan_problems

SPEC = JournalSpec(
    system="Test ERP",
    company=lambda m: "usrt",
    header=lambda m, when: {"journal_name": "Alloc"},
    document_key=lambda name, partition, n: f"MLC {name} {partition}" + (f" adj{n}" if n else ""),
    dimensions=lambda m, t: [],
)
DIMENSIONS = [
    (
        "CostCenter",
        ValueSource(column="fees.area", map={"NORTH": "001", "SOUTH": "002"}),
    )
]


def mapping(**overrides) -> JournalMapping:
    raw = {
        "name": "fees",
        "looker_query": "fees",
        "account": {"constant": "618200"},
        "amount": {"column": "fees.amount"},
        "currency": {"constant": "USD"},
        "text": "Fees {fees.area} {partition}",
        "balancing": {"mode": "offset", "account": "220500", "text": "Accrued fees {partition}"},
    }
    raw.update(overrides)
    return JournalMapping.model_validate(raw)


def rows(*values: tuple[str, str]) -> LookerRows:
    result = []
    for number, (area, amount) in enumerate(values, start=1):
        row = {"fees.area": area, "fees.amount": Decimal(amount) if amount is not None else None}
        result.append((SourceRow("looker/fees", "looker api", "run-1", None, number, row), row))
    return LookerRows("looker/fees", result)


def build(m: JournalMapping, looker: LookerRows, dims=DIMENSIONS):
    return build_plan(
        SPEC,
        m,
        looker,
        flow="erp/fees_journal",
        partition="2026-11-23",
        partition_last_day=date(2026, 11, 29),
        dimensions=dims,
    )


def test_lines_keep_exact_amounts_and_an_offset_line_balances_the_journal():
    plan, problems = build(mapping(), rows(("NORTH", "12345678901.234567891"), ("SOUTH", "-0.004")))
    assert problems == []
    first, offset = plan.lines  # -0.004 rounds to zero: it makes no line
    assert (first.account, first.dimensions, first.debit, first.text) == (
        "618200",
        (("CostCenter", "001"),),
        Decimal("12345678901.23"),
        "Fees NORTH 2026-11-23",
    )
    assert offset.kind == "offset" and offset.account == "220500" and offset.credit == Decimal("12345678901.23")
    assert plan.balance == 0 and plan_problems(plan) == []
    # Rounding is shown, never dropped: 12345678901.234567891 → .23 and -0.004 → 0.00.
    assert plan.rounding_difference == {"USD": Decimal("-0.004567891") + Decimal("0.004")}
    assert plan.header == {"journal_name": "Alloc", "posting_date": "2026-11-29"}
    assert plan.document_key == "MLC fees 2026-11-23"


def test_zero_lines_are_skipped_only_when_asked():
    plan, _ = build(mapping(skip_zero_lines=False), rows(("NORTH", "10"), ("SOUTH", "0.001")))
    assert [line.amount for line in plan.lines] == [Decimal("10.00"), Decimal("0.00"), Decimal("-10.00")]


def test_rounding_each_line_can_unbalance_rows_that_balance_and_the_difference_is_booked_or_refused():
    looker = rows(("NORTH", "0.005"), ("NORTH", "0.005"), ("SOUTH", "-0.01"))  # balances exactly; rounds to .01+.01-.01
    refused, problems = build(mapping(balancing={"mode": "rows_balance"}), looker)
    assert any("rounding_account" in p.reason for p in problems)
    booked, problems = build(mapping(balancing={"mode": "rows_balance"}, rounding_account="999000"), looker)
    assert problems == [] and booked.balance == 0
    assert booked.lines[-1].kind == "rounding" and booked.lines[-1].credit == Decimal("0.01")
    assert booked.rounding_difference == {"USD": Decimal("0.010")}


def test_half_cents_round_away_from_zero_and_currencies_keep_their_own_precision():
    plan, _ = build(mapping(currency={"constant": "JPY"}), rows(("NORTH", "2.5"), ("SOUTH", "-2.5")))
    assert [line.amount for line in plan.lines[:2]] == [Decimal("3"), Decimal("-3")]
    plan, _ = build(mapping(), rows(("NORTH", "0.125"), ("SOUTH", "-0.125")))
    assert [line.amount for line in plan.lines[:2]] == [Decimal("0.13"), Decimal("-0.13")]


def test_an_amount_past_28_digits_is_rounded_exactly_not_a_crash():
    """Decimal's default context holds 28 digits: quantizing a larger amount raised InvalidOperation, and the
    plan step crashed without naming the row."""
    plan, problems = build(mapping(), rows(("NORTH", "123456789012345678901234567.895"), ("SOUTH", "-5")))
    assert problems == [] and plan.lines[0].amount == Decimal("123456789012345678901234567.90")
    # and summed exactly: a cent beside 1E+29 does not balance away
    from mlconnector_pipelines.engine.post import plan_problems

    off, _ = build(
        mapping(balancing={"mode": "rows_balance"}),
        rows(("NORTH", "100000000000000000000000000000.01"), ("SOUTH", "-100000000000000000000000000000")),
    )
    assert off.balance == Decimal("0.01") and any("balance" in p.reason for p in plan_problems(off))


def test_an_unmapped_value_and_a_binary_float_name_their_rows_and_make_no_lines():
    looker = rows(("NORTH", "5"), ("EAST", "7"))
    looker.rows.append(
        (
            SourceRow("looker/fees", "looker api", "run-1", None, 3, {"fees.area": "SOUTH", "fees.amount": 1.1}),
            {"fees.area": "SOUTH", "fees.amount": 1.1},
        )
    )
    plan, problems = build(mapping(), looker)
    described = [p.describe() for p in problems]
    assert len(described) == 2
    assert (
        "looker/fees row 2 {" in described[0] and "fees.area = 'EAST' has no entry in the mapping table" in described[0]
    )
    assert "looker/fees row 3 {" in described[1] and "binary float" in described[1]
    assert [line.source.row_number for line in plan.lines if line.source] == [1]


def test_debit_and_credit_columns_and_a_field_missing_from_the_query():
    m = mapping(
        amount={"debit_column": "fees.debit", "credit_column": "fees.credit"}, balancing={"mode": "rows_balance"}
    )
    data = [
        {"fees.area": "NORTH", "fees.debit": Decimal("4"), "fees.credit": None},
        {"fees.area": "SOUTH", "fees.debit": None, "fees.credit": Decimal("4")},
    ]
    looker = LookerRows(
        "looker/fees", [(SourceRow("looker/fees", "api", "r", None, i + 1, d), d) for i, d in enumerate(data)]
    )
    plan, problems = build(m, looker)
    assert problems == [] and [line.amount for line in plan.lines] == [Decimal("4.00"), Decimal("-4.00")]
    with pytest.raises(ConfigError, match="fees.amount"):
        build(mapping(), looker)


def test_an_unbalanced_plan_and_an_empty_one_are_refused_by_the_engine_before_any_write():
    plan, _ = build(mapping(balancing={"mode": "rows_balance"}), rows(("NORTH", "5"), ("SOUTH", "-4")))
    assert any("does not balance" in p.reason and "1.00" in p.reason for p in plan_problems(plan))
    empty, _ = build(mapping(), rows())
    assert any("no lines" in p.reason for p in plan_problems(empty))


def test_rounding_is_booked_per_currency_and_a_currency_is_one_whatever_its_case():
    """Half cents in USD round to a cent of imbalance, booked on the rounding account in USD; `eur` and `EUR`
    are one currency, which balances on its own and needs no line."""
    values = [("NORTH", "0.005", "USD"), ("NORTH", "0.005", "USD"), ("SOUTH", "-0.01", "USD"),
              ("NORTH", "100", "eur"), ("SOUTH", "-100", "EUR")]  # fmt: skip
    looker = LookerRows("looker/fees", [
        (SourceRow("looker/fees", "looker api", "run-1", None, n, row), row)
        for n, row in enumerate(
            [{"fees.area": a, "fees.amount": Decimal(x), "fees.currency": c} for a, x, c in values], 1
        )
    ])  # fmt: skip
    m = mapping(currency={"column": "fees.currency"}, balancing={"mode": "rows_balance"}, rounding_account="999000")
    plan, problems = build(m, looker)
    assert problems == [] and plan_problems(plan) == []
    assert [(line.kind, line.currency, line.amount) for line in plan.lines[5:]] == [
        ("rounding", "USD", Decimal("-0.01"))
    ]
    assert {line.currency for line in plan.lines} == {"USD", "EUR"}


def test_a_currency_that_is_no_iso_code_names_its_row_and_four_place_currencies_keep_four_places():
    by_column = {"currency": {"column": "fees.currency"}}
    looker = LookerRows("looker/fees", [
        (SourceRow("looker/fees", "looker api", "run-1", None, n, row), row)
        for n, row in enumerate([{"fees.area": "NORTH", "fees.amount": Decimal("1.23456"), "fees.currency": "CLF"},
                                 {"fees.area": "SOUTH", "fees.amount": Decimal("5"), "fees.currency": "US$"}], 1)
    ])  # fmt: skip
    plan, problems = build(mapping(**by_column), looker)
    assert [(p.line.source.row_number, p.reason) for p in problems] == [
        (2, "currency 'US$' is not a three-letter ISO 4217 code")
    ]
    assert plan.lines[0].amount == Decimal("1.2346")  # UF: four places, not cents


def test_each_currency_balances_on_its_own():
    """USD 100 against EUR -100 adds up to nothing, but balances nothing: the offset is booked per currency,
    and rows that must balance are refused currency by currency."""
    looker = LookerRows("looker/fees", [
        (SourceRow("looker/fees", "looker api", "run-1", None, n, row), row)
        for n, row in enumerate([{"fees.area": "NORTH", "fees.amount": Decimal("100"), "fees.currency": "USD"},
                                 {"fees.area": "SOUTH", "fees.amount": Decimal("-100"), "fees.currency": "EUR"}], 1)
    ])  # fmt: skip
    by_column = {"currency": {"column": "fees.currency"}}
    offset, problems = build(mapping(**by_column), looker)
    assert problems == [] and plan_problems(offset) == []
    assert [(line.kind, line.currency, line.amount) for line in offset.lines[2:]] == [
        ("offset", "USD", Decimal("-100.00")), ("offset", "EUR", Decimal("100.00"))
    ]  # fmt: skip
    refused, _ = build(mapping(balancing={"mode": "rows_balance"}, **by_column), looker)
    assert refused.balance == 0  # in total
    reasons = [p.reason for p in plan_problems(refused)]
    assert len(reasons) == 2 and "in USD differ by 100.00" in reasons[0] and "in EUR differ by -100.00" in reasons[1]


def test_a_text_template_fills_context_then_row_blanks_none_and_keeps_unknown_names():
    from mlconnector_pipelines.core.journal_mapping import render

    row = {"fees.area": "NORTH", "fees.amount": Decimal("12345678901.234567891"), "fees.note": None, "row": "r"}
    context = {"journal": "fees", "partition": "2026-11-23", "row": 7}
    text = "{journal}/{partition} #{row}: {fees.area} {fees.amount}{fees.note} {fees.unknown} {} {{fees.area}}"
    assert render(text, row, context) == "fees/2026-11-23 #7: NORTH 12345678901.234567891 {fees.unknown} {} {NORTH}"
    assert render("", row, context) == "" and render("plain", row, context) == "plain"


def test_looker_rows_keep_the_result_order_the_row_numbers_and_plain_values():
    import numpy as np
    import pandas as pd

    from mlconnector_pipelines.engine.journal import looker_rows

    frame = pd.DataFrame(
        {
            "fees_area": ["SOUTH", "NORTH", None],
            "fees_amount": [Decimal("-0.004"), Decimal("12345678901.234567891"), Decimal("1")],
            "fees_count": np.array([3, 4, 5], dtype="int64"),
            "fees_share": [0.5, float("nan"), 0.25],
            "_row_number": [20, 10, 30],  # a delivery numbers its rows; these are not positions
            "_run_id": ["run-9", "run-9", "run-9"],
            "_source": ["delivery d-1", "delivery d-1", "delivery d-1"],
            "_window_start": pd.to_datetime(["2026-11-23"] * 3, utc=True),
        }
    )
    looker = looker_rows("looker/fees", frame, ["fees.area", "fees.amount"])
    sources = [source for source, _ in looker.rows]
    assert [s.row_number for s in sources] == [10, 20, 30]
    assert {(s.query, s.origin, s.run_id, s.window_start) for s in sources} == {
        ("looker/fees", "delivery d-1", "run-9", "2026-11-23T00:00:00+00:00")
    }
    first, _, third = (values for _, values in looker.rows)
    assert first == {
        "fees.area": "NORTH",
        "fees.amount": Decimal("12345678901.234567891"),
        "fees_count": 4,
        "fees_share": None,
        "fees_area": "NORTH",
        "fees_amount": Decimal("12345678901.234567891"),
    }
    assert type(first["fees_count"]) is int and third["fees.area"] is None
    assert sources[0].values == {k: v for k, v in first.items() if k not in ("fees_area", "fees_amount")}


@pytest.mark.parametrize(
    ("start", "end", "day"),
    [
        ("2026-03-03T10:00:00", "2026-03-03T11:00:00", "2026-03-03"),  # an hour posts on its own day
        ("2026-03-03T00:00:00", "2026-03-04T00:00:00", "2026-03-03"),
        ("2026-03-02T00:00:00", "2026-03-09T00:00:00", "2026-03-08"),  # a week on its Sunday
    ],
)
def test_a_partitions_journal_posts_on_the_last_day_the_partition_covers(start, end, day):
    """The posting date of a partitioned journal is its window's last day: an hourly window is on its own day
    (it was the day before: one day back from its end)."""
    from datetime import datetime
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    import dagster as dg

    from mlconnector_pipelines.flows.journals import _partition

    zone = ZoneInfo("America/New_York")
    window = dg.TimeWindow(
        datetime.fromisoformat(start).replace(tzinfo=zone), datetime.fromisoformat(end).replace(tzinfo=zone)
    )
    context = SimpleNamespace(has_partition_key=True, partition_key=start[:10], partition_time_window=window)
    assert _partition(context) == (start[:10], date.fromisoformat(day))


def test_a_number_dimension_as_the_warehouse_types_it_is_the_account_and_mapping_key_looker_wrote():
    """A LookML `type: number` dimension (an account number, a cost centre code) is a DECIMAL(38,9) column in the
    warehouse: read back as 601200.000000000 it was no account and matched no mapping entry (a default took every
    row)."""
    looker = LookerRows("looker/fees", [])
    for number, (account, centre, amount) in enumerate([("601200", "7", "5"), ("601300", "8", "2.5")], start=1):
        row = {"fees.account": Decimal(account).quantize(Decimal("1E-9")), "fees.centre": Decimal(centre).quantize(
               Decimal("1E-9")), "fees.area": "NORTH", "fees.amount": Decimal(amount)}  # fmt: skip
        looker.rows.append((SourceRow("looker/fees", "looker api", "run-1", None, number, row), row))
    centres = [("CostCenter", ValueSource(column="fees.centre", map={"7": "007"}, default="009"))]
    plan, problems = build(mapping(account={"column": "fees.account"}), looker, dims=centres)
    assert problems == []
    assert [(line.account, line.dimensions) for line in plan.lines if line.kind == "row"] == [
        ("601200", (("CostCenter", "007"),)),
        ("601300", (("CostCenter", "009"),)),
    ]


def _warehouse_of(backend: str, tmp_path, monkeypatch):
    """An empty warehouse of this backend (Snowflake faked by fakesnow, patched for the caller's `with`)."""
    from contextlib import nullcontext

    from mlconnector_pipelines.config import parse_config
    from mlconnector_pipelines.warehouse.resource import WarehouseResource

    if backend == "duckdb":
        settings, patch = {"backend": "duckdb", "duckdb_path": str(tmp_path / "w.duckdb")}, nullcontext()
    else:
        import fakesnow

        monkeypatch.setenv("SNOWFLAKE_TEST_PASSWORD", "fake-password")
        patch = fakesnow.patch()
        settings = {"backend": "snowflake", "snowflake": {
            "account": "acme-test", "user": "LOADER", "password": {"env": "SNOWFLAKE_TEST_PASSWORD"},
            "database": "ANALYTICS", "schema": "ERP", "warehouse": "LOAD_WH"}}  # fmt: skip
    cfg = parse_config({"profile": "sandbox", "data_dir": str(tmp_path), "warehouse": settings})
    return patch, lambda: WarehouseResource.from_config(cfg).process_config_and_initialize().open()


@pytest.mark.parametrize("backend", ["duckdb", "snowflake"])
def test_a_date_time_posting_date_is_the_day_looker_showed_in_the_query_zone(backend, tmp_path, monkeypatch):
    """A query run in Europe/Berlin shows both rows on 2026-03-02 (00:30 and 23:30 local). The Looker asset lands
    them as UTC moments (DuckDB hands them back in UTC, Snowflake's NTZ naive): the date of the UTC moment put the
    first row on 2026-03-01, and the journal was refused for carrying two posting dates. A `convert_tz: no` field
    lands as Looker wrote it, and reads so."""
    from datetime import UTC, datetime

    from mlconnector_pipelines.core.types import ColumnType
    from mlconnector_pipelines.engine.journal import looker_rows
    from mlconnector_pipelines.flows.looker import result_frame
    from mlconnector_pipelines.warehouse.schema import ROW_NUMBER, TableSpec

    fields = ["fees.area", "fees.amount", "fees.booked_at", "fees.entered_at"]
    types = {"fees_area": ColumnType.STRING, "fees_amount": ColumnType.DECIMAL,
             "fees_booked_at": ColumnType.TIMESTAMP, "fees_entered_at": ColumnType.TIMESTAMP}  # fmt: skip
    looker = [
        {"fees.area": "NORTH", "fees.amount": Decimal("10"), "fees.booked_at": "2026-03-02 00:30:00",
         "fees.entered_at": "2026-03-02 23:30:00"},
        {"fees.area": "SOUTH", "fees.amount": Decimal("-10"), "fees.booked_at": "2026-03-02 23:30:00",
         "fees.entered_at": None},
    ]  # fmt: skip
    frame = result_frame(
        looker, fields, types, window_start=None, extracted_at=datetime.now(UTC), run_id="r",
        source="looker api", timezone="Europe/Berlin", unconverted={"fees_entered_at"},
    )  # fmt: skip
    table = TableSpec("looker_fees", (), None, {**types, ROW_NUMBER: ColumnType.INTEGER}, snapshot=True)
    patch, open_warehouse = _warehouse_of(backend, tmp_path, monkeypatch)
    with patch:
        warehouse = open_warehouse()
        with warehouse.replace_snapshot(table, None) as load:
            load.write(table, frame)
        rows = looker_rows("looker/fees", warehouse.read_table("looker_fees"), fields)
    assert [(values["fees.booked_at"], values["fees.entered_at"]) for _, values in rows.rows] == [
        ("2026-03-02T00:30:00+01:00", "2026-03-02T23:30:00+00:00"),
        ("2026-03-02T23:30:00+01:00", None),
    ]
    m = mapping(posting_date_column="fees.booked_at", balancing={"mode": "rows_balance"})
    plan, problems = build_plan(
        SPEC, m, rows, flow="erp/fees_journal", partition="", partition_last_day=None, dimensions=DIMENSIONS
    )
    assert problems == []
    assert plan.header["posting_date"] == "2026-03-02" and plan.document_key == "MLC fees 2026-03-02"


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-inf", "sNaN"])
def test_an_amount_that_is_no_finite_number_is_a_problem_naming_its_row(amount):
    """Decimal reads NaN and Infinity from a text field; rounding one raised decimal.InvalidOperation (no
    ValueError), and the plan step crashed without naming the row."""
    looker = LookerRows("looker/fees", [])
    for number, row in enumerate(
        [{"fees.area": "NORTH", "fees.amount": amount}, {"fees.area": "SOUTH", "fees.amount": "5"}], 1
    ):
        looker.rows.append((SourceRow("looker/fees", "looker api", "run-1", None, number, row), row))
    plan, problems = build(mapping(), looker)
    assert [(p.line.source.row_number, p.reason) for p in problems] == [
        (1, f"fees.amount = {amount!r} is not a finite number")
    ]
    assert [line.source.row_number for line in plan.lines if line.source] == [2]


def test_number_fields_in_the_line_text_read_as_looker_wrote_them():
    """A LookML number is DECIMAL(38,9) in the warehouse: the text showed `7.000000000` and `5.500000000`,
    eating the 60 characters, where the account and mapping key were already read as Looker wrote them."""
    nine = Decimal("1E-9")
    row = {"fees.area": Decimal("7").quantize(nine), "fees.amount": Decimal("5.5").quantize(nine)}
    looker = LookerRows("looker/fees", [(SourceRow("looker/fees", "looker api", "run-1", None, 1, row), row)])
    plan, problems = build(mapping(text="Fees centre {fees.area} amount {fees.amount}"), looker, dims=[])
    assert problems == []
    assert plan.lines[0].text == "Fees centre 7 amount 5.5"


def test_a_padded_value_finds_its_mapping_entry_not_the_default():
    """A CHAR column pads 'NORTH' to 'NORTH ': it missed the table and took the default account, silently."""
    m = mapping(account={"column": "fees.area", "map": {"NORTH": "618200"}, "default": "699999"})
    plan, problems = build(m, rows(("NORTH ", "5"), (" SOUTH", "-5")), dims=[])
    assert problems == []
    assert [line.account for line in plan.lines if line.kind == "row"] == ["618200", "699999"]


def test_the_rounding_difference_is_kept_and_shown_per_currency():
    """-0.4 JPY and -0.004 USD were one figure, -0.404, in the plan's metadata: no currency's difference."""
    from mlconnector_pipelines.flows.journals import _plan_metadata

    looker = LookerRows("looker/fees", [])
    for number, (amount, currency) in enumerate([("100.4", "JPY"), ("1.004", "USD"), ("2", "USD")], start=1):
        row = {"fees.area": "NORTH", "fees.amount": Decimal(amount), "fees.currency": currency}
        looker.rows.append((SourceRow("looker/fees", "looker api", "run-1", None, number, row), row))
    plan, problems = build(mapping(currency={"column": "fees.currency"}), looker)
    assert problems == []
    assert plan.rounding_difference == {"JPY": Decimal("-0.4"), "USD": Decimal("-0.004")}
    assert _plan_metadata(plan, plan, None, [], 3)["rounding_difference"] == "JPY -0.4, USD -0.004"


def test_currency_precision_is_found_whatever_the_case_of_its_code():
    """Lines look a currency up in upper case: `jpy: 1` was silently never used (JPY kept its 0 places)."""
    plan, _ = build(mapping(currency={"constant": "JPY"}, currency_precision={" jpy": 1}), rows(("NORTH", "2.25")))
    assert plan.lines[0].amount == Decimal("2.3")
    with pytest.raises(ValueError, match="currency JPY is given twice"):
        mapping(currency_precision={"jpy": 1, "JPY": 0})


def test_rows_on_several_posting_dates_are_named_per_date():
    """A journal has one posting date; the problem said only which dates the rows carried, not which rows."""
    days = [
        "2026-03-01",
        "2026-03-02",
        "2026-03-01",
        "2026-03-02",
        "2026-03-02",
        "2026-03-02",
        "2026-03-02",
        "2026-03-02",
    ]
    looker = LookerRows("looker/fees", [])
    for number, day in enumerate(days, start=1):
        row = {"fees.area": "NORTH", "fees.amount": Decimal("1"), "fees.day": day}
        looker.rows.append((SourceRow("looker/fees", "looker api", "run-1", None, number, row), row))
    _, problems = build(mapping(posting_date_column="fees.day"), looker)
    assert [p.describe() for p in problems] == [
        "the rows carry 2 posting dates (2026-03-01: rows 1, 3; 2026-03-02: rows 2, 4, 5, 6, 7, …); a journal has one"
    ]
