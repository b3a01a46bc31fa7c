"""What both benchmarks share: the sandbox as its own process, and one child process per measured path."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY_DAYS = 28  # what the sandbox generates, and what one single-run backfill loads


def history() -> tuple[datetime, datetime]:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=HISTORY_DAYS), end


def parser(page_size: int) -> argparse.ArgumentParser:
    """The options every benchmark takes; a benchmark adds its own volume option."""
    p = argparse.ArgumentParser()
    p.add_argument("--page-size", type=int, default=page_size)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    return p


def range_tags(start: datetime, end: datetime) -> dict[str, str]:
    """The run tags of one run over the daily partitions of [start, end) (a single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": start.date().isoformat(),
        "dagster/asset_partition_range_end": (end - timedelta(days=1)).date().isoformat(),
    }


def run_job_over_history(raw_config: dict, job_name: str):
    """Run the product's job once over the whole history (a single-run backfill); returns (result, seconds)."""
    import dagster as dg

    from mlconnector_pipelines.config import parse_config
    from mlconnector_pipelines.definitions import build_definitions

    start, end = history()
    job = build_definitions(parse_config(raw_config)).resolve_job_def(job_name)
    began = time.monotonic()
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, tags=range_tags(start, end))
    seconds = time.monotonic() - began
    assert result.success
    result.run_figures = {  # a range run's request figures are the run's tags (flows/windowed.py)
        k.removeprefix("mlconnector/"): v
        for k, v in instance.get_run_by_id(result.run_id).tags.items()
        if k.startswith("mlconnector/")
    }
    return result, seconds


def rows_loaded(result, table: str) -> int:
    """Rows of `table` a range run loaded: each partition's materialization carries its own window's rows."""
    return sum(
        e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == table
    )


def existing_audit_store(data_dir: Path) -> None:
    """Create the product's audit store before a journal is timed: a deployment makes its schema once, at
    installation, and each later run only opens it (a version check, a few ms, which stays timed)."""
    from mlconnector_pipelines.audit.store import AuditStore

    AuditStore.sqlite(data_dir / "product" / "audit.sqlite").close()


def start_sandbox(args: list[str], health_url: str, ca: Path) -> subprocess.Popen:
    """`mlconnector sandbox ARGS` in the background, returned once `health_url` answers."""
    import httpx

    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/mlconnector"), "sandbox", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    started = time.monotonic()
    while True:
        try:
            httpx.get(health_url, verify=str(ca), timeout=2)
            print(f"sandbox up in {time.monotonic() - started:.1f}s", flush=True)
            return process
        except (httpx.HTTPError, OSError):
            if process.poll() is not None:
                raise SystemExit(process.stderr.read().decode()) from None
            time.sleep(0.5)


def report_child(figures: dict) -> None:
    """Called in the child: add its peak RSS and CPU time and print the figures as JSON."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures.update(peak_rss_mb=usage.ru_maxrss / 1024, cpu_seconds=usage.ru_utime + usage.ru_stime)
    print(json.dumps(figures))


def measure(script: str, path: str, data_dir: Path, page_size: int) -> dict:
    """Run `script --child PATH` in a fresh process (so peak RSS is that path's own) and read its figures;
    `process_wall_seconds` is the child's whole life as the parent saw it (interpreter, imports, set-up)."""
    began = time.monotonic()
    output = subprocess.run(
        [sys.executable, script, "--child", path, "--data-dir", str(data_dir), "--page-size", str(page_size)],
        capture_output=True,
        text=True,
        check=False,
    )
    if output.returncode:
        raise SystemExit(output.stderr[-4000:])
    return {**json.loads(output.stdout.strip().splitlines()[-1]), "process_wall_seconds": time.monotonic() - began}


def compare(script: str, sandbox: subprocess.Popen, data_dir: Path, page_size: int) -> tuple[dict, dict]:
    """Measure the bare loop, then the product, against the same sandbox; stop the sandbox either way."""
    try:
        bare = measure(script, "bare", data_dir, page_size)
        product = measure(script, "product", data_dir, page_size)
    finally:
        sandbox.terminate()
    return product, bare


def ratio(product: dict, bare: dict) -> float:
    return (product["records"] / product["seconds"]) / (bare["records"] / bare["seconds"])


def print_results(
    title: str,
    product: tuple[str, dict],
    bare: tuple[str, dict],
    extra: str,
    target: str = "",
    others: list[tuple[str, dict]] | tuple = (),
) -> None:
    """The paths side by side; `extra` names one more figure each path reports (requests, logins).

    `others` are further contenders' rows ("(c) name", figures), each with its ratio (a)/(c).
    """
    print(f"\n{title}")
    print(f"{'path':<34}{'records':>11}{'seconds':>9}{'records/s':>11}{extra:>10}{'peak RSS MB':>13}{'CPU s':>8}")
    for name, f in (product, bare, *others):
        print(
            f"{name:<34}{f['records']:>11,}{f['seconds']:>9.1f}{f['records'] / f['seconds']:>11,.0f}"
            f"{f[extra]:>10,}{f['peak_rss_mb']:>13,.0f}{f['cpu_seconds']:>8.1f}"
        )
    print(f"\nratio (a)/(b) records/s: {ratio(product[1], bare[1]):.2f}" + (f"   ({target})" if target else ""))
    for name, f in others:
        print(f"ratio (a)/{name.split()[0]} records/s: {ratio(product[1], f):.2f}")
