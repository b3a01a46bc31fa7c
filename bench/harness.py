"""What both benchmarks share: the sandbox as its own process, and one child process per measured path."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_sandbox(args: list[str], health_url: str, ca: Path) -> subprocess.Popen:
    """`mlconnector sandbox ARGS` in the background, returned once `health_url` answers."""
    import httpx
    process = subprocess.Popen([str(ROOT / ".venv/bin/mlconnector"), "sandbox", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = time.monotonic()
    while True:
        try:
            httpx.get(health_url, verify=str(ca), timeout=2)
            print(f"sandbox up in {time.monotonic() - started:.1f}s", flush=True)
            return process
        except (httpx.HTTPError, OSError):
            if process.poll() is not None:
                raise SystemExit(process.stderr.read().decode())
            time.sleep(0.5)


def report_child(figures: dict) -> None:
    """Called in the child: add its peak RSS and CPU time and print the figures as JSON."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures.update(peak_rss_mb=usage.ru_maxrss / 1024, cpu_seconds=usage.ru_utime + usage.ru_stime)
    print(json.dumps(figures))


def measure(script: str, path: str, data_dir: Path, page_size: int) -> dict:
    """Run `script --child PATH` in a fresh process (so peak RSS is that path's own) and read its figures."""
    output = subprocess.run([sys.executable, script, "--child", path, "--data-dir", str(data_dir),
                             "--page-size", str(page_size)], capture_output=True, text=True, check=False)
    if output.returncode:
        raise SystemExit(output.stderr[-4000:])
    return json.loads(output.stdout.strip().splitlines()[-1])


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
