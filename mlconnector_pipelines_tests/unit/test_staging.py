"""Staging folders live under the data folder, and a load killed mid-way leaves nothing behind for good."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from mlconnector_pipelines.warehouse.staging import clear_stale_staging, staging_folder

HOLD_A_STAGING_FOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mlconnector_pipelines.warehouse.staging import staging_folder
    with staging_folder(Path(sys.argv[1])) as directory:
        (directory / "batch.parquet").write_bytes(b"x" * 1000)
        print(directory, flush=True)
        time.sleep(600)
""")


def _hold(root):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_STAGING_FOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    return process, process.stdout.readline().strip()


def _age(directory, seconds=3600):
    then = time.time() - seconds
    os.utime(directory, (then, then))


def test_a_killed_loads_folder_is_cleared_by_the_next_load_and_a_live_one_is_kept(tmp_path):
    root = tmp_path / "staging"
    live, live_dir = _hold(root)
    killed, killed_dir = _hold(root)
    try:
        killed.send_signal(signal.SIGKILL)  # as an out-of-memory kill would: no cleanup runs
        killed.wait(10)
        for directory in (live_dir, killed_dir):
            assert os.path.isdir(directory) and directory.startswith(str(root))
            _age(directory)
        with staging_folder(root) as mine:  # the next load starts
            assert os.path.isdir(mine)
            assert not os.path.exists(killed_dir)
            assert os.path.isdir(live_dir)  # still in use by a running load
        assert not os.path.exists(mine)
    finally:
        live.kill()
        live.wait(10)
    _age(live_dir)
    assert [str(d) for d in clear_stale_staging(root)] == [live_dir]


def test_a_folder_just_made_is_not_taken_for_a_dead_one(tmp_path):
    root = tmp_path / "staging"
    young = root / "load-justnow"
    young.mkdir(parents=True)  # not yet locked by the process creating it
    assert clear_stale_staging(root) == []
    _age(young)
    assert clear_stale_staging(root) == [young]


def test_the_warehouse_resource_stages_under_the_data_folder(sandbox, tmp_path):
    from mlconnector_pipelines.warehouse.resource import WarehouseResource

    from ..conftest import make_config

    cfg = make_config(sandbox, tmp_path)
    warehouse = WarehouseResource.from_config(cfg).open()
    assert warehouse.staging_root == tmp_path / "staging"


HOLD_THE_WAREHOUSE_LOCK = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_a_wait_for_the_duckdb_lock_is_logged_with_what_it_waits_for(tmp_path, caplog):
    import logging

    from mlconnector_pipelines.warehouse.duckdb_backend import DuckDBWarehouse

    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WAREHOUSE_LOCK, str(path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with caplog.at_level(logging.WARNING, logger="mlconnector.warehouse"):
            with DuckDBWarehouse(path).session() as session:  # waits until the holder exits
                session.execute("SELECT 1")
    finally:
        holder.wait(10)
    waits = [r.getMessage() for r in caplog.records if "waiting for the DuckDB warehouse" in r.getMessage()]
    assert len(waits) == 1 and str(path) in waits[0] and "another process holds its lock" in waits[0]
