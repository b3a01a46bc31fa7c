"""The SQL delivery store on PostgreSQL: a delivery is committed only after every one given an earlier serial
number, so the sensor's cursor (the last serial it saw) never passes over one committed late."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from mlconnector_pipelines.ingest.store import Delivery, SqlDeliveryStore

from .test_audit_store import postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def database():
    with postgres_database("deliveries") as url:
        yield url


def _delivery(delivery_id: str) -> Delivery:
    return Delivery(delivery_id, "looker", "fees", "2026-12-07T00:00:00+00:00", {}, [{"fees.amount": 1}])


def test_a_delivery_is_not_committed_past_one_another_receiver_is_still_storing(database):
    """Receiver A has inserted d1 (serial 1) and not committed; receiver B stores d2 (serial 2) and commits; the
    sensor ticks, sees d2 and keeps 2 as its cursor; A commits d1, which no later tick returns. B's store now
    waits for A, so d2 is committed after d1."""
    store = SqlDeliveryStore(database)
    other = sa.create_engine(database)
    with other.connect() as first:
        transaction = first.begin()
        first.execute(store.table.insert().values(id="d1", source="looker", target="fees",
                                                  received_at="2026-12-07T00:00:00+00:00", body=b"{}"))  # fmt: skip
        stored = threading.Thread(target=store.put, args=(_delivery("d2"),))
        stored.start()
        time.sleep(1.0)
        assert stored.is_alive(), "d2 was committed while d1, an earlier serial, was not"
        transaction.commit()
    stored.join(10)
    assert not stored.is_alive()
    with store.engine.connect() as c:
        assert [r.id for r in c.execute(sa.select(store.table.c.id).order_by(store.table.c.seq))] == ["d1", "d2"]
    store.engine.dispose()
    other.dispose()


def test_a_delivery_is_read_without_its_rows_where_only_its_head_is_needed(tmp_path):
    """The deliveries sensor and the repeat check read every pending delivery whole (rows included, ~4.5 times
    its size in memory): a backlog's tick needed gigabytes. Without rows, the head is read up to them: rows that
    could not even be parsed (here, cut off) are never touched."""
    from mlconnector_pipelines.ingest.store import Delivery, FileDeliveryStore

    store = FileDeliveryStore(tmp_path)
    rows = [{"v.id": n, "v.amount": "12345678901234567.89"} for n in range(1000)]
    store.put(Delivery("0a1b", "looker", "vendors", "2026-12-07T10:00:00+00:00", {"scheduled_plan_id": 7}, rows))
    [(cursor, whole)] = store.after(None)
    assert whole.rows == rows
    [path] = tmp_path.glob("*.json")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # the rows cut off
    [(same, head)] = store.after(None, rows=False)
    assert (same, head.id, head.target, head.detail, head.rows) == (
        cursor,
        "0a1b",
        "vendors",
        {"scheduled_plan_id": 7},
        [],
    )
    assert store.latest("vendors", rows=False).id == "0a1b"
