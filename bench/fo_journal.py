"""A 10,000-line general journal into F&O: the posting engine beside a bare loop of the same $batch requests.

    .venv/bin/python bench/fo_journal.py [--lines 10000] [--lines-per-batch 1000]

Starts `mlconnector sandbox` as its own process, then measures, each in a fresh child process:
  (a) product: Looker rows → plan → validation (reference data read from F&O) → find by natural key →
      header → atomic $batch changesets → read back and compare → audit store (SQLite), i.e.
      PostingEngine.run, the work of the journal asset's four ops without Dagster's own process and
      event log around them;
  (b) bare:    a token, the header POST and the same changesets, answers only status-checked.
Prints lines/s, requests per line and peak RSS for both, and the ratio a/b.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

from harness import existing_audit_store, report_child, start_sandbox

PORT = 47893
WEEK, SUNDAY = "2026-11-23", date(2026, 11, 29)
COST_CENTRES = [f"{n:03d}" for n in range(1, 13)]


def rows(lines: int) -> list[tuple[str, str, Decimal]]:
    """Deterministic Looker rows: cost centre, area, an exact fee (some with more digits than a double holds)."""
    rng = random.Random(7)
    out = []
    for n in range(lines - 1):  # the offset line makes `lines`
        cents = Decimal(rng.randint(1, 10_000_000)) / 100
        fee = cents + Decimal("0.000000001") * (n % 3) if n % 50 else Decimal("12345678901.23")
        out.append((COST_CENTRES[n % len(COST_CENTRES)], f"R{n:05d}", fee))
    return out


def run_product(data_dir: Path, lines: int, per_batch: int) -> dict:
    import pandas as pd

    from mlconnector_pipelines.audit.store import AuditStore
    from mlconnector_pipelines.config import parse_config, sandbox_profile
    from mlconnector_pipelines.engine.journal import build_plan, looker_rows
    from mlconnector_pipelines.engine.post import PostingEngine
    from mlconnector_pipelines.flows.finance_operations import SPEC

    raw = sandbox_profile(data_dir, f"https://127.0.0.1:{PORT}")
    raw.update(data_dir=str(data_dir / "product"), sap_business_one=None)
    fo = raw["finance_operations"]
    fo["lines_per_batch"] = per_batch
    fo["journals"] = [
        {
            "name": "bench",
            "looker_query": "fee_allocation",
            "legal_entity": "usrt",
            "journal_name": "Alloc",
            "account": {"constant": "618200"},
            "dimensions": {"CostCenter": {"column": "b.cost_center"}, "BusinessUnit": {"constant": "002"}},
            "amount": {"column": "b.fee"},
            "currency": {"constant": "USD"},
            "text": "Fees {b.cost_center} {b.ref}",
            "balancing": {"mode": "offset", "account": "220500", "dimensions": {"BusinessUnit": "002"}},
        }
    ]
    cfg = parse_config(raw)
    mapping = cfg.finance_operations.journals[0]
    from mlconnector_pipelines.systems.finance_operations.resource import FinanceOperationsResource

    # The Looker asset's partition as the warehouse read hands it over; turning it into rows is product work.
    frame = pd.DataFrame(
        [{"b_cost_center": c, "b_ref": r, "b_fee": f, "_row_number": n, "_run_id": "bench", "_source": "looker api"}
         for n, (c, r, f) in enumerate(rows(lines), start=1)]
    )  # fmt: skip
    began = time.monotonic()
    looker = looker_rows("looker/bench", frame, ["b.cost_center", "b.ref", "b.fee"])
    target = FinanceOperationsResource.from_section(cfg.finance_operations, cfg.data_dir).journal_target()
    audit = AuditStore.sqlite(cfg.data_dir / "audit.sqlite")
    plan, problems = build_plan(
        SPEC, mapping, looker, flow="finance_operations/bench_journal", partition=WEEK,
        partition_last_day=SUNDAY, dimensions=SPEC.dimensions(mapping, target),
    )  # fmt: skip
    assert not problems, problems[:3]
    engine = PostingEngine(target, audit, run_id=str(uuid.uuid4()))
    result = engine.run(plan)
    seconds = time.monotonic() - began
    assert result.outcome == "posted" and result.lines_written == lines, result.summary()
    stats = target.client.http.stats
    target.close()
    return {"records": lines, "seconds": seconds, "requests": stats.requests, "writes": stats.by_method.get("POST", 0)}


def run_bare(data_dir: Path, lines: int, per_batch: int) -> dict:
    import httpx
    import orjson

    from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    from mlconnector_pipelines.sandbox.finance_operations import ENVIRONMENT_URL

    base = f"https://127.0.0.1:{PORT}"
    fees = rows(lines)
    offset = sum(f for _, _, f in fees)
    began = time.monotonic()
    requests = 0
    with httpx.Client(verify=str(data_dir / "sandbox/ca.pem"), timeout=300) as http:
        token = http.post(
            f"{base}/{TENANT_ID}/oauth2/v2.0/token",
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials",
                  "scope": f"{ENVIRONMENT_URL}/.default"},
        ).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "OData-Version": "4.0"}
        header = http.post(
            f"{base}/data/LedgerJournalHeaders",
            json={"dataAreaId": "usrt", "JournalName": "Alloc", "Description": f"bare {uuid.uuid4().hex[:8]}"},
            headers=headers,
        )
        header.raise_for_status()
        number = header.json()["JournalBatchNumber"]
        requests += 1
        bodies = [
            {"LineNumber": n, "AccountDisplayValue": f"618200-002-{centre}", "DebitAmount": f"{fee:.2f}",
             "CreditAmount": "0", "Text": f"Fees {centre} {ref}"}
            for n, (centre, ref, fee) in enumerate(fees, start=1)
        ] + [{"LineNumber": lines, "AccountDisplayValue": "220500-002", "DebitAmount": "0",
              "CreditAmount": f"{offset:.2f}", "Text": "Offset"}]  # fmt: skip
        for start in range(0, len(bodies), per_batch):
            # The product's multipart format, part headers included, so both send the same bytes to the server.
            batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
            parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
            for content_id, line in enumerate(bodies[start : start + per_batch], start=1):
                body = (
                    orjson.dumps(
                        {
                            "dataAreaId": "usrt",
                            "JournalBatchNumber": number,
                            "AccountType": "Ledger",
                            "CurrencyCode": "USD",
                            "TransDate": "2026-11-29T12:00:00Z",
                            **line,
                        }
                    )
                    .replace(b'"DebitAmount":"', b'"DebitAmount":')
                    .replace(b'","CreditAmount":"', b',"CreditAmount":')
                )
                body = body.replace(b'","Text"', b',"Text"')  # amounts as JSON numbers
                parts.append(
                    f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                    f"Content-ID: {content_id}\r\n\r\nPOST {base}/data/LedgerJournalLines HTTP/1.1\r\n"
                    "Content-Type: application/json; odata.metadata=minimal\r\nAccept: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body + b"\r\n"
                )  # fmt: skip
            parts.append(f"--{changeset}--\r\n--{batch}--\r\n".encode())
            payload = b"".join(parts)
            answer = http.post(
                f"{base}/data/$batch", content=payload,
                headers={**headers, "Content-Type": f"multipart/mixed; boundary={batch}", "Accept": "multipart/mixed"},
            )  # fmt: skip
            requests += 1
            assert (
                answer.status_code == 200
                and b"HTTP/1.1 201" in answer.content
                and b"HTTP/1.1 400" not in answer.content
            )
    return {"records": lines, "seconds": time.monotonic() - began, "requests": requests, "writes": requests}


def child(path: str, data_dir: Path, lines: int, per_batch: int) -> None:
    report_child((run_product if path == "product" else run_bare)(data_dir, lines, per_batch))


def main() -> None:
    import argparse
    import json
    import subprocess
    import sys

    options = argparse.ArgumentParser()
    options.add_argument("--lines", type=int, default=10_000)
    options.add_argument("--lines-per-batch", type=int, default=1000)
    options.add_argument("--child", help=argparse.SUPPRESS)
    options.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.child:
        return child(args.child, args.data_dir, args.lines, args.lines_per_batch)
    data_dir = Path(tempfile.mkdtemp(prefix="mlconnector-bench-fo-"))
    sandbox = start_sandbox(
        ["--port", str(PORT), "--data-dir", str(data_dir), "--no-live"],
        f"https://127.0.0.1:{PORT}/_sandbox/health",
        data_dir / "sandbox/ca.pem",
    )

    existing_audit_store(data_dir)

    def measure(path: str) -> dict:
        output = subprocess.run(
            [sys.executable, __file__, "--child", path, "--data-dir", str(data_dir), "--lines", str(args.lines),
             "--lines-per-batch", str(args.lines_per_batch)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if output.returncode:
            raise SystemExit(output.stderr[-4000:])
        return json.loads(output.stdout.strip().splitlines()[-1])

    try:
        bare, product = measure("bare"), measure("product")
    finally:
        sandbox.terminate()
    print(f"\nF&O general journal of {args.lines:,} lines, {args.lines_per_batch:,} lines per $batch changeset")
    print(f"{'path':<44}{'lines/s':>9}{'seconds':>9}{'requests':>10}{'req/line':>10}{'peak RSS MB':>13}{'CPU s':>8}")
    for name, f in (("(a) product: plan, validate, post, verify", product), ("(b) bare $batch loop", bare)):
        print(
            f"{name:<44}{f['records'] / f['seconds']:>9,.0f}{f['seconds']:>9.2f}{f['requests']:>10,}"
            f"{f['requests'] / f['records']:>10.4f}{f['peak_rss_mb']:>13,.0f}{f['cpu_seconds']:>8.1f}"
        )
    ratio = (product["records"] / product["seconds"]) / (bare["records"] / bare["seconds"])
    writes = product["writes"] / product["records"]
    print(f"\nratio (a)/(b) lines/s: {ratio:.2f}   (target ≥ 0.9)")
    print(f"writes per line (a): {writes:.4f} (header + changesets; ≤ 1/100 + lookups); peak RSS (a) target < 300 MB")


if __name__ == "__main__":
    main()
