"""The sandbox and the client catalog each follow shared/specs — checked against the spec itself."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from mlconnector_pipelines.sandbox.business_central.models import bc_field_types
from mlconnector_pipelines.systems.business_central.catalog import ENTITIES
from mlconnector_pipelines.warehouse.schema import ColumnType

from ..conftest import SHARED_SPECS

# The sandbox ships its copy of shared/specs' BC spec; the tests check against that copy, so they
# run (and fail loudly) on any checkout. Whether the copy still equals shared/specs is checked
# where the steering repo is beside this one.
PACKAGED_SPEC = (
    Path(__file__).resolve().parents[2]
    / "mlconnector_pipelines"
    / "sandbox"
    / "business_central"
    / "specs"
    / "business-central-api-v2.0.entities.json"
)
SHARED_SPEC = SHARED_SPECS / "business-central-api-v2.0.entities.json"


def spec_entities() -> dict:
    assert PACKAGED_SPEC.is_file(), f"{PACKAGED_SPEC} is missing: the sandbox must ship the BC spec"
    return {e["entitySet"]: e for e in json.loads(PACKAGED_SPEC.read_text())["entities"]}


@pytest.mark.skipif(not SHARED_SPEC.exists(), reason="the steering repo's shared/specs is not beside this checkout")
def test_the_packaged_spec_is_shared_specs_unchanged():
    assert PACKAGED_SPEC.read_bytes() == SHARED_SPEC.read_bytes()


def test_sandbox_ships_the_spec_unchanged():
    spec = spec_entities()
    assert bc_field_types() == {name: {f["name"]: f["type"] for f in e["fields"]} for name, e in spec.items()}


def test_sandbox_records_have_exactly_the_spec_fields_and_types(sandbox):
    spec = spec_entities()
    company = sandbox.companies()[0]
    edm_checks = {
        "Edm.String": lambda v: isinstance(v, str),
        "Edm.Guid": lambda v: isinstance(v, str) and len(v) == 36,
        "Edm.Decimal": lambda v: isinstance(v, (int, Decimal)) and not isinstance(v, bool),
        "Edm.Int32": lambda v: isinstance(v, int),
        "Edm.Int64": lambda v: isinstance(v, int),
        "Edm.Boolean": lambda v: isinstance(v, bool),
        "Edm.Date": lambda v: isinstance(v, str) and len(v) == 10,
        "Edm.DateTimeOffset": lambda v: isinstance(v, str) and v.endswith("Z"),
    }
    nav = {
        "salesInvoices": "salesInvoiceLines",
        "purchaseInvoices": "purchaseInvoiceLines",
        "salesOrders": "salesOrderLines",
        "generalLedgerEntries": "dimensionSetLines",
    }
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


def test_client_catalog_types_agree_with_the_spec():
    spec = spec_entities()
    expected = {
        "Edm.Decimal": ColumnType.DECIMAL,
        "Edm.Int32": ColumnType.INTEGER,
        "Edm.Int64": ColumnType.INTEGER,
        "Edm.Boolean": ColumnType.BOOLEAN,
        "Edm.Date": ColumnType.DATE,
        "Edm.DateTimeOffset": ColumnType.TIMESTAMP,
    }
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


@pytest.mark.skipif(
    not (SHARED_SPECS / "looker-api-4.0.oas.json").exists(),
    reason="the steering repo's shared/specs is not beside this checkout",
)
def test_the_tests_copy_of_the_looker_spec_is_shared_specs_unchanged():
    copy = Path(__file__).parents[1] / "specs" / "looker-api-4.0.oas.json"
    assert copy.read_bytes() == (SHARED_SPECS / "looker-api-4.0.oas.json").read_bytes()
