"""How the Acumatica client reads list answers into the warehouse's pages (no server needed)."""

import pyarrow as pa

from mlconnector_pipelines.systems.acumatica.client import without_details

LINES = pa.list_(pa.struct([("Qty", pa.int64())]))


def _page(details: list) -> pa.Table:
    return pa.table({"id": [str(n) for n in range(len(details))], "Details": pa.array(details, LINES)})


def test_records_whose_details_a_list_answer_left_out_are_the_ones_read_again():
    """An absent (null) detail list was not given; `[]` beside a record with lines is a document without any."""
    assert without_details(_page([[{"Qty": 1}], None, [], None]), ["Details"]) == [1, 3]


def test_a_page_whose_records_all_answer_empty_details_is_read_again_record_by_record():
    """A site may answer `$expand`ed details `[]` on a list: where no record of the page has a line, none of
    them is trusted to have none (read alone, a document without lines answers `[]` again)."""
    assert without_details(_page([[], [], None]), ["Details"]) == [0, 1, 2]
    assert without_details(_page([[], []]), ["Details"], only_absent=True) == []


def test_a_page_without_the_detail_field_at_all_is_read_again_and_one_not_asked_for_details_is_not():
    assert without_details(pa.table({"id": ["a", "b"]}), ["Details"]) == [0, 1]
    assert without_details(_page([None]), []) == []
