"""The sandbox and the client catalog each follow shared/specs — checked against the spec itself."""

import json
from decimal import Decimal

import pytest

from mlconnector_pipelines.sandbox.app import bc_field_types
from mlconnector_pipelines.systems.business_central.catalog import ENTITIES
from mlconnector_pipelines.warehouse.schema import ColumnType

from .conftest import SHARED_SPECS

SPEC_PATH = SHARED_SPECS / "business-central-api-v2.0.entities.json"
needs_spec = pytest.mark.skipif(not SPEC_PATH.exists(), reason="shared/specs is not beside this checkout")


def spec_entities() -> dict:
    return {e["entitySet"]: e for e in json.loads(SPEC_PATH.read_text())["entities"]}


@needs_spec
def test_sandbox_ships_the_shared_spec_unchanged():
    spec = spec_entities()
    assert bc_field_types() == {name: {f["name"]: f["type"] for f in e["fields"]} for name, e in spec.items()}


@needs_spec
def test_sandbox_records_have_exactly_the_spec_fields_and_types(sandbox):
    spec = spec_entities()
    company = sandbox.companies()[0]
    edm_checks = {
        "Edm.String": lambda v: isinstance(v, str), "Edm.Guid": lambda v: isinstance(v, str) and len(v) == 36,
        "Edm.Decimal": lambda v: isinstance(v, (int, Decimal)) and not isinstance(v, bool),
        "Edm.Int32": lambda v: isinstance(v, int), "Edm.Int64": lambda v: isinstance(v, int),
        "Edm.Boolean": lambda v: isinstance(v, bool),
        "Edm.Date": lambda v: isinstance(v, str) and len(v) == 10,
        "Edm.DateTimeOffset": lambda v: isinstance(v, str) and v.endswith("Z"),
    }
    nav = {"salesInvoices": "salesInvoiceLines", "purchaseInvoices": "purchaseInvoiceLines",
           "salesOrders": "salesOrderLines", "generalLedgerEntries": "dimensionSetLines"}
    for entity in ENTITIES:
        records = sandbox.records(company["id"], entity.entity_set)
        assert records, entity.entity_set
        checks = [(entity.entity_set, records[:50])]
        if entity.entity_set in nav:
            line_set = nav[entity.entity_set]
            checks.append((line_set, [l for r in records[:50] for l in r.pop(line_set)]))
        for entity_set, rows in checks:
            fields = {f["name"]: f["type"] for f in spec[entity_set]["fields"]}
            for row in rows:
                assert set(row) == set(fields), (entity_set, set(row) ^ set(fields))
                for name, value in row.items():
                    if value is None or fields[name].startswith("enum:"):
                        continue
                    assert edm_checks[fields[name]](value), (entity_set, name, value)


@needs_spec
def test_client_catalog_types_agree_with_the_spec():
    spec = spec_entities()
    expected = {"Edm.Decimal": ColumnType.DECIMAL, "Edm.Int32": ColumnType.INTEGER, "Edm.Int64": ColumnType.INTEGER,
                "Edm.Boolean": ColumnType.BOOLEAN, "Edm.Date": ColumnType.DATE,
                "Edm.DateTimeOffset": ColumnType.TIMESTAMP}
    for entity in ENTITIES:
        assert spec[entity.entity_set]["hasLastModifiedDateTime"], entity.entity_set
        for owner, types in [(entity.entity_set, entity.types), *[(c.navigation, c.types) for c in entity.children]]:
            fields = {f["name"]: f["type"] for f in spec[owner]["fields"]}
            for name, column_type in types.items():
                if name in fields:  # line types are shared across line entities
                    assert expected.get(fields[name]) == column_type, (owner, name)
            # every typed field in the spec is typed in the catalog (else it would land as text)
            missing = [n for n, t in fields.items() if t in expected and n not in types]
            assert not missing, (owner, missing)
        assert entity.entity_set in spec
