"""Every table the windowed flows write is keyed by company: ids repeat across companies.

BC's Copy Company keeps record ids, and SAP B1's DocEntry starts at 1 in every company
database; a key without the company would merge two companies' records.
"""

import pytest

from mlconnector_pipelines.flows.windowed import table_specs
from mlconnector_pipelines.systems.business_central.catalog import ENTITIES as BC
from mlconnector_pipelines.systems.sap_business_one.catalog import ENTITIES as SAP
from mlconnector_pipelines.warehouse.schema import COMPANY_ID, PARENT_ID


@pytest.mark.parametrize("entity", [*BC, *SAP], ids=lambda e: e.entity_set)
def test_every_generated_table_is_keyed_by_company_then_the_records_own_key(entity):
    parent, *lines = table_specs(entity)
    assert parent.key[0] == COMPANY_ID and len(parent.key) == 2
    for spec in lines:
        assert spec.key[:2] == (COMPANY_ID, PARENT_ID) and len(spec.key) == 3
        assert spec.parent is parent
