"""How Looker rows become journal lines: the mapping every journal target shares (F&O, Acumatica).

Each configured journal names the Looker query it posts and, for every line, where its account,
dimensions, amount, currency and text come from: a Looker field, a constant, or a table mapping
Looker values to the target's values. A row that cannot be mapped (an unmapped value, an amount
that is not a number) is a problem naming the row; nothing is posted while any row has one.
Amounts stay Decimal from Looker's JSON to the request body, rounded once to the currency's
precision, half away from zero; the rounding difference is shown and booked, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .posting import ZERO, PlannedLine, Problem, SourceRow, balances, round_to
from .settings import Strict

# ISO 4217 minor units of the currencies whose precision is not 2; `currency_precision` overrides.
_MINOR_UNITS = {
    "BHD": 3, "BIF": 0, "CLF": 4, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0, "UYI": 0,
    "UYW": 4, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def currency_places(currency: str, overrides: Mapping[str, int]) -> int:
    """Decimal places of an ISO 4217 code; ValueError for what is not one (`US$`, `EURO`, empty), whose
    precision would otherwise be guessed."""
    code = currency.upper()
    if len(code) != 3 or not (code.isascii() and code.isalpha()):
        raise ValueError(f"currency {currency!r} is not a three-letter ISO 4217 code")
    return overrides.get(code, _MINOR_UNITS.get(code, 2))


class ValueSource(Strict):
    """A line value: a Looker field's value, a constant, or a Looker field's value through a table."""

    column: str | None = Field(None, description="Looker field, e.g. fee_allocation.cost_center.")
    constant: str | None = Field(None, description="The same value on every line.")
    map: dict[str, str] | None = Field(None, description="Looker value → target value (with `column`).")
    default: str | None = Field(None, description="With `map`: the value for a Looker value the table lacks.")

    @model_validator(mode="after")
    def _one_source(self) -> ValueSource:
        if (self.column is None) == (self.constant is None):
            raise ValueError("give exactly one of `column` or `constant`")
        if (self.map is not None or self.default is not None) and self.column is None:
            raise ValueError("`map` and `default` translate a `column`")
        return self

    def fields(self) -> list[str]:
        return [self.column] if self.column else []

    def value(self, row: Mapping[str, Any]) -> str:
        """The value for this row; raises ValueError naming what is missing."""
        if self.constant is not None:
            return self.constant
        raw = row.get(self.column)
        text = "" if raw is None else _as_written(raw)
        if self.map is None:
            if text == "":
                raise ValueError(f"{self.column} is empty")
            return text
        key = text.strip()  # a CHAR column's padding ('NORTH ') is no other value
        if key in self.map:
            return self.map[key]
        if self.default is not None:
            return self.default
        raise ValueError(f"{self.column} = {text!r} has no entry in the mapping table (and no default)")


class AmountMapping(Strict):
    """One signed field (positive = debit), or a debit field and a credit field."""

    column: str | None = Field(None, description="Signed amount: positive is a debit, negative a credit.")
    debit_column: str | None = None
    credit_column: str | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> AmountMapping:
        split = self.debit_column is not None or self.credit_column is not None
        if (self.column is not None) == split:
            raise ValueError("give `column` (signed), or `debit_column` and `credit_column`")
        if split and (self.debit_column is None or self.credit_column is None):
            raise ValueError("give both `debit_column` and `credit_column`")
        return self

    def fields(self) -> list[str]:
        return [f for f in (self.column, self.debit_column, self.credit_column) if f]

    def signed(self, row: Mapping[str, Any]) -> Decimal:
        if self.column is not None:
            return _decimal(row, self.column)
        return _decimal(row, self.debit_column) - _decimal(row, self.credit_column)


class BalancingConfig(Strict):
    mode: Literal["rows_balance", "offset"] = Field(
        "rows_balance",
        description="rows_balance: the rows' debits must equal their credits. offset: one line on the offset "
        "account takes the difference.",
    )
    account: str | None = Field(None, description="The offset account (mode: offset).")
    dimensions: dict[str, str] = Field(default_factory=dict, description="Dimension values of the offset line.")
    text: str = Field("Offset {journal} {partition}", description="Text of the offset line (a template).")

    @model_validator(mode="after")
    def _account_for_offset(self) -> BalancingConfig:
        if self.mode == "offset" and not self.account:
            raise ValueError("mode: offset needs `account`")
        return self


class JournalMapping(Strict):
    """What every journal posted from Looker declares, whatever the target."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,29}$",
        description="The journal's name: its asset is <system>/<name>_journal; it is part of the natural key.",
    )
    description: str = ""
    looker_query: str = Field(description="The `looker.queries[]` entry whose rows this journal posts.")
    posting_date_column: str | None = Field(
        None, description="Looker date field of each line's date; default: the last day of the partition."
    )
    account: ValueSource
    amount: AmountMapping
    currency: ValueSource
    text: str = Field(
        "{journal} {partition} row {row}",
        description="Line text (≤ 60 characters): {<looker field>}, {journal}, {partition} and {row} are filled in.",
    )
    balancing: BalancingConfig = BalancingConfig()
    rounding_account: str | None = Field(
        None,
        description="Account of the line that books the rounding difference; default the offset account. Without "
        "either, a journal whose rounded lines do not balance is refused.",
    )
    skip_zero_lines: bool = Field(True, description="Rows whose amount rounds to zero make no line.")
    on_change: Literal["fail", "adjust"] = Field(
        "fail",
        description="A period already posted with other figures: fail (name the differences), or adjust (post a "
        "difference journal; posted entries are never edited).",
    )
    approval: Literal["automatic", "required"] = Field(
        "automatic",
        description="required: new Looker figures only preview the plan; a person materializes the journal.",
    )
    currency_precision: dict[str, int] = Field(
        default_factory=dict, description="Decimal places per currency code (any case: `jpy` is JPY)."
    )

    @field_validator("currency_precision")
    @classmethod
    def _codes_as_looked_up(cls, value: dict[str, int]) -> dict[str, int]:
        """Keys as lines look them up (upper case, as currency_places): `jpy: 0` was silently never used."""
        codes = {}
        for code, places in value.items():
            key = code.strip().upper()
            if key in codes:
                raise ValueError(
                    f"currency {key} is given twice ({', '.join(c for c in value if c.strip().upper() == key)})"
                )
            codes[key] = places
        return codes

    def looker_fields(self) -> list[str]:
        fields = self.account.fields() + self.amount.fields() + self.currency.fields()
        fields += [self.posting_date_column] if self.posting_date_column else []
        fields += [f for f in _PLACEHOLDER.findall(self.text) if "." in f]
        return fields


def render(template: str, row: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """`{name}` from the context, else from the row; an unknown name stays as written, a None is blank."""
    out = []
    for literal, name in _template_parts(template):
        out.append(literal)
        if name is not None:
            value = context.get(name, row.get(name, f"{{{name}}}"))
            if value is not None:
                out.append(_as_written(value))
    return "".join(out)


@lru_cache(maxsize=256)
def _template_parts(template: str) -> tuple[tuple[str, str | None], ...]:
    """The template split once into (text, placeholder) pairs: it is filled once per row."""
    parts, at = [], 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append((template[at : match.start()], match.group(1)))
        at = match.end()
    return (*parts, (template[at:], None))


def row_amount(mapping: JournalMapping, row: Mapping[str, Any]) -> Decimal:
    return mapping.amount.signed(row)


def lines_from_rows(
    mapping: JournalMapping,
    rows: Sequence[tuple[SourceRow, Mapping[str, Any]]],
    *,
    dimensions: Sequence[tuple[str, ValueSource]],
    partition: str,
    text_limit: int = 60,
) -> tuple[list[PlannedLine], list[Problem], dict[str, Decimal]]:
    """Lines in row order, the rows that cannot be mapped, and the rounding difference per currency.

    Then a balancing line (mode: offset) and a rounding line, when needed.
    """
    lines: list[PlannedLine] = []
    problems: list[Problem] = []
    rounding: dict[str, Decimal] = {}  # what rounding each line to its currency's precision moved, by currency
    context = {"journal": mapping.name, "partition": partition}
    for source, row in rows:
        try:
            exact = row_amount(mapping, row)
            currency = mapping.currency.value(row).strip().upper()  # one code whatever its spelling: `usd` is USD
            amount = round_to(exact, currency_places(currency, mapping.currency_precision))
            account = mapping.account.value(row)
            dims = tuple((name, value) for name, source_of in dimensions if (value := source_of.value(row)))
        except ValueError as exc:
            placeholder = PlannedLine(len(lines) + 1, "?", (), ZERO, ZERO, "", "", source=source)
            problems.append(Problem(placeholder, str(exc)))
            continue
        rounding[currency] = rounding.get(currency, ZERO) + (amount - exact)
        if amount == ZERO and mapping.skip_zero_lines:
            continue
        text = render(mapping.text, row, {**context, "row": source.row_number})
        if len(text) > text_limit:
            text = text[:text_limit]
        lines.append(
            PlannedLine(
                number=len(lines) + 1,
                account=account,
                dimensions=dims,
                debit=amount if amount > 0 else ZERO,
                credit=-amount if amount < 0 else ZERO,
                currency=currency,
                text=text,
                source=source,
            )
        )
    return lines, problems, rounding


def closing_lines(
    mapping: JournalMapping,
    lines: list[PlannedLine],
    rounding: Mapping[str, Decimal],
    *,
    partition: str,
    dimension_order: list[str],
) -> list[PlannedLine]:
    """The offset lines (mode: offset) or the rounding lines that make each currency balance, if any."""
    if not lines:
        return []
    context = {"journal": mapping.name, "partition": partition}
    extra: list[PlannedLine] = []
    if mapping.balancing.mode == "offset":
        dims = tuple(
            (name, mapping.balancing.dimensions[name])
            for name in dimension_order
            if mapping.balancing.dimensions.get(name)
        )
        text = render(mapping.balancing.text, {}, context)[:60]
        for owed_in, owed in balances(lines).items():
            if owed != ZERO:
                extra.append(
                    _line(len(lines) + len(extra) + 1, mapping.balancing.account, dims, -owed, owed_in, text, "offset")
                )
    elif mapping.rounding_account:
        # A currency whose rows balanced before rounding: book the difference rounding made, on its own line.
        text = f"Rounding {mapping.name} {partition}"[:60]
        for owed_in, owed in balances(lines).items():
            if owed != ZERO and owed == rounding.get(owed_in, ZERO):
                extra.append(
                    _line(len(lines) + len(extra) + 1, mapping.rounding_account, (), -owed, owed_in, text, "rounding")
                )
    return extra


def _line(number: int, account: str, dims, amount: Decimal, currency: str, text: str, kind) -> PlannedLine:
    return PlannedLine(
        number=number,
        account=account,
        dimensions=dims,
        debit=amount if amount > 0 else ZERO,
        credit=-amount if amount < 0 else ZERO,
        currency=currency,
        text=text,
        kind=kind,
    )


def posting_date(mapping: JournalMapping, row: Mapping[str, Any], partition_last_day: date | None) -> date:
    if mapping.posting_date_column is None:
        if partition_last_day is None:
            raise ValueError("an unpartitioned journal needs posting_date_column")
        return partition_last_day
    raw = row.get(mapping.posting_date_column)
    if raw is None or raw == "":
        raise ValueError(f"{mapping.posting_date_column} is empty")
    try:
        return date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise ValueError(f"{mapping.posting_date_column} = {raw!r} is not a date") from None


def _decimal(row: Mapping[str, Any], column: str) -> Decimal:
    raw = row.get(column)
    if raw is None or raw == "":
        return ZERO
    if type(raw) is Decimal:  # as the warehouse hands amounts over; str() and back would give the same number
        return raw
    if isinstance(raw, float):
        raise ValueError(f"{column} = {raw!r} arrived as a binary float; amounts must stay exact")
    try:
        number = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{column} = {raw!r} is not a number") from None
    if not number.is_finite():  # Decimal reads NaN and Infinity, which no rounding or sum takes
        raise ValueError(f"{column} = {raw!r} is not a finite number")
    return number


def _as_written(value: Any) -> str:
    """A Looker value (an account, a mapping key, a field in the line text) as Looker wrote it. A LookML number
    lands in the warehouse as DECIMAL(38,9): 601200.000000000 was no account and matched no mapping entry, and
    `7.000000000` in a text ate the 60 characters."""
    if isinstance(value, Decimal):
        return format(value.to_integral_value() if value == value.to_integral_value() else value.normalize(), "f")
    return str(value)
