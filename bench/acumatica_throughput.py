"""Acumatica → DuckDB and a 5,000-line GL batch, each beside a bare loop, in one run.

    .venv/bin/python bench/acumatica_throughput.py [--bills 20000] [--page-size 1000] [--lines 5000]

Starts `mlconnector sandbox` as its own process (Acumatica with `--bills` AP bills of 1–4 lines
over 28 days of history), then measures, each in a fresh child process:
  (a) product: the Acumatica job's Bill asset (with lines) into DuckDB, one run over the whole
      history (single-run backfill): a light scan per window, then slices read whole;
  (b) bare:    an httpx loop making the product's requests (a scan of the range's modified stamps,
      then each slice with $expand=Details), parsing each page (exact decimals) and discarding it;
      (b') the same with $top/$skip paging instead: fewer requests, but a record that changes while
      pages are read shifts the offsets (issue 14 rules it out for the product), for reference;
  (c) product: a 5,000-line journal transaction through the posting engine (plan, validation,
      audit store, the batch, read-back);
  (d) bare:    the same PUT of the same batch, with the product's `$expand=Details` (the answer carrying
      the saved lines is the product's read-back; until 2026-12-07 the bare PUT asked for no lines back).
Prints records/s (lines/s) and peak RSS for each, and the ratios a/b and c/d.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from harness import (
    HISTORY_DAYS,
    existing_audit_store,
    history,
    report_child,
    rows_loaded,
    run_job_over_history,
    start_sandbox,
)

PORT = 47895


def base() -> str:
    return f"https://127.0.0.1:{PORT}/AcumaticaERP"


def raw_config(data_dir: Path, page_size: int) -> dict:
    from mlconnector_pipelines.config import sandbox_profile

    start, _ = history()
    raw = sandbox_profile(data_dir, f"https://127.0.0.1:{PORT}")
    raw.update(data_dir=str(data_dir / "product"), sap_business_one=None, looker=None, finance_operations=None)
    raw["business_central"] = None
    raw["dataverse"] = None  # its Sales → BC flow needs Business Central
    raw["acumatica"].update(entities=["Bill"], page_size=page_size, journals=[])
    raw["acumatica"]["partitions"]["start"] = start.date().isoformat()
    return raw


def run_product(data_dir: Path, page_size: int, lines: int) -> dict:
    result, seconds = run_job_over_history(raw_config(data_dir, page_size), "acumatica_to_warehouse")
    return {
        "records": rows_loaded(result, "acumatica_bills"),
        "seconds": seconds,
        "requests": int(result.run_figures["http_requests"]),
    }


def token(http) -> dict:
    from mlconnector_pipelines.sandbox.acumatica import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME

    answer = http.post(
        f"{base()}/identity/connect/token",
        data={"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "username": USERNAME, "password": PASSWORD, "scope": "api"},
    ).json()  # fmt: skip
    return {"Authorization": f"Bearer {answer['access_token']}"}


def run_bare(data_dir: Path, page_size: int, lines: int) -> dict:
    """The product's requests, bare: one light scan of the range's (modified, id), then each slice of at most a
    page read whole with its lines (`$skip` paging, which loses records that change mid-read, is (b'))."""
    import httpx

    from mlconnector_pipelines.core.paginate import slices  # where to cut: arithmetic, no product machinery

    start, end = history()
    began = time.monotonic()
    records = requests = 0

    def literal(moment: datetime) -> str:
        return f"datetimeoffset'{moment.astimezone(UTC).isoformat(timespec='microseconds')}'"

    def between(lower: datetime, upper: datetime) -> str:
        return f"LastModifiedDateTime ge {literal(lower)} and LastModifiedDateTime lt {literal(upper)}"

    with httpx.Client(verify=str(data_dir / "sandbox/ca.pem"), timeout=300) as http:
        headers = token(http)
        url = f"{base()}/entity/Default/24.200.001/Bill"
        scan = http.get(
            url, params={"$filter": between(start, end), "$select": "LastModifiedDateTime"}, headers=headers
        ).json()
        requests += 1
        stamps = sorted(
            (datetime.fromisoformat(r["LastModifiedDateTime"]["value"].replace("Z", "+00:00")), r["id"]) for r in scan
        )
        for first, last in slices(stamps, page_size):
            lower = stamps[first][0] if first else start
            upper = stamps[last][0] if last < len(stamps) else end
            page = json.loads(
                http.get(url, params={"$filter": between(lower, upper), "$expand": "Details"}, headers=headers).content,
                parse_float=Decimal,
            )
            requests += 1
            records += len(page)
        http.post(f"{base()}/entity/auth/logout", headers=headers)
    return {"records": records, "seconds": time.monotonic() - began, "requests": requests}


def run_bare_skip(data_dir: Path, page_size: int, lines: int) -> dict:
    import httpx

    start, end = history()
    began = time.monotonic()
    records = requests = 0
    with httpx.Client(verify=str(data_dir / "sandbox/ca.pem"), timeout=300) as http:
        headers = token(http)
        # The window the product's single-run backfill reads: the whole history in one pass.
        where = (
            f"LastModifiedDateTime ge datetimeoffset'{start.isoformat()}' and "
            f"LastModifiedDateTime lt datetimeoffset'{end.isoformat()}'"
        )
        skip = 0
        while True:
            page = json.loads(
                http.get(
                    f"{base()}/entity/Default/24.200.001/Bill",
                    params={"$filter": where, "$expand": "Details", "$top": page_size, "$skip": skip},
                    headers=headers,
                ).content,
                parse_float=Decimal,
            )
            requests += 1
            records += len(page)
            if len(page) < page_size:
                break
            skip += page_size
        http.post(f"{base()}/entity/auth/logout", headers=headers)
    return {"records": records, "seconds": time.monotonic() - began, "requests": requests}


def journal_rows(lines: int) -> list[tuple[str, str, Decimal]]:
    subs = ["100-000", "200-000", "300-000", "400-000", "100-100", "200-100"]
    return [(subs[n % len(subs)], f"R{n:05d}", Decimal(1000 + n) / 100) for n in range(lines - 1)]


def run_product_journal(data_dir: Path, page_size: int, lines: int) -> dict:
    from datetime import date

    import pandas as pd

    from mlconnector_pipelines.audit.store import AuditStore
    from mlconnector_pipelines.config import parse_config
    from mlconnector_pipelines.engine.journal import build_plan, looker_rows
    from mlconnector_pipelines.engine.post import PostingEngine
    from mlconnector_pipelines.flows.acumatica import journal_flow
    from mlconnector_pipelines.systems.acumatica.config import AcumaticaJournal
    from mlconnector_pipelines.systems.acumatica.resource import AcumaticaResource

    cfg = parse_config(raw_config(data_dir, page_size))
    mapping = AcumaticaJournal.model_validate(
        {"name": "bench", "looker_query": "bench", "account": {"constant": "65000"}, "subaccount": {"column": "b.sub"},
         "branch": {"constant": "HQ"}, "amount": {"column": "b.fee"}, "currency": {"constant": "USD"},
         "text": "Fees {b.sub} {b.ref}", "balancing": {"mode": "offset", "account": "20100",
         "dimensions": {"Subaccount": "000-000", "Branch": "HQ"}}}
    )  # fmt: skip
    spec = journal_flow(cfg.acumatica).spec
    # The Looker asset's partition as the warehouse read hands it over; turning it into rows is product work.
    frame = pd.DataFrame(
        [{"b_sub": sub, "b_ref": ref, "b_fee": fee, "_row_number": n, "_run_id": "bench", "_source": "looker api"}
         for n, (sub, ref, fee) in enumerate(journal_rows(lines), start=1)]
    )  # fmt: skip
    began = time.monotonic()
    looker = looker_rows("looker/bench", frame, ["b.sub", "b.ref", "b.fee"])
    plan, problems = build_plan(
        spec, mapping, looker, flow=f"acumatica/bench_{uuid.uuid4().hex[:6]}", partition="2026-11-23",
        partition_last_day=date(2026, 11, 29), dimensions=spec.dimensions(mapping, None),
    )  # fmt: skip
    assert not problems, problems[:3]
    target = AcumaticaResource.from_section(cfg.acumatica, cfg.data_dir).journal_target()
    audit = AuditStore.sqlite(cfg.data_dir / "audit.sqlite")
    result = PostingEngine(target, audit, run_id=str(uuid.uuid4())).run(plan)
    seconds = time.monotonic() - began
    assert result.lines_written == lines, result.summary()
    requests = target.client.http.stats.requests
    target.close()
    return {"records": lines, "seconds": seconds, "requests": requests}


def run_bare_journal(data_dir: Path, page_size: int, lines: int) -> dict:
    import httpx
    import orjson

    rows = journal_rows(lines)
    offset = sum(fee for _, _, fee in rows)
    began = time.monotonic()
    with httpx.Client(verify=str(data_dir / "sandbox/ca.pem"), timeout=300) as http:
        headers = token(http)
        details = [
            {"BranchID": {"value": "HQ"}, "Account": {"value": "65000"}, "Subaccount": {"value": sub},
             "DebitAmount": {"value": orjson.Fragment(str(fee))}, "CreditAmount": {"value": 0},
             "TransactionDescription": {"value": f"Fees {sub} {ref}"}, "ReferenceNbr": {"value": f"MLC{n}"}}
            for n, (sub, ref, fee) in enumerate(rows, start=1)
        ] + [{"BranchID": {"value": "HQ"}, "Account": {"value": "20100"}, "Subaccount": {"value": "000-000"},
              "DebitAmount": {"value": 0}, "CreditAmount": {"value": orjson.Fragment(str(offset))}}]  # fmt: skip
        batch = {
            "Module": {"value": "GL"}, "LedgerID": {"value": "ACTUAL"}, "BranchID": {"value": "HQ"},
            "TransactionDate": {"value": "2026-11-29T00:00:00+00:00"}, "Description": {"value": f"bare {uuid.uuid4().hex[:8]}"},
            "CurrencyID": {"value": "USD"}, "Hold": {"value": False}, "Details": details,
        }  # fmt: skip
        answer = http.put(  # as the product's: the answer carries the saved lines (its read-back)
            f"{base()}/entity/Default/24.200.001/JournalTransaction",
            params={"$expand": "Details"},
            content=orjson.dumps(batch),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text[:300]
        http.post(f"{base()}/entity/auth/logout", headers=headers)
    return {"records": lines, "seconds": time.monotonic() - began, "requests": 1}


PATHS = {
    "product": run_product,
    "bare": run_bare,
    "bare-skip": run_bare_skip,
    "product-journal": run_product_journal,
    "bare-journal": run_bare_journal,
}


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--bills", type=int, default=20_000)
    options.add_argument("--page-size", type=int, default=1000)
    options.add_argument("--lines", type=int, default=5000)
    options.add_argument("--child", help=argparse.SUPPRESS)
    options.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.child:
        return report_child(PATHS[args.child](args.data_dir, args.page_size, args.lines))
    data_dir = Path(tempfile.mkdtemp(prefix="mlconnector-bench-acumatica-"))
    sandbox = start_sandbox(
        ["--port", str(PORT), "--data-dir", str(data_dir), "--acumatica-bills", str(args.bills),
         "--history-days", str(HISTORY_DAYS), "--no-live"],
        f"https://127.0.0.1:{PORT}/_sandbox/health",
        data_dir / "sandbox/ca.pem",
    )  # fmt: skip

    existing_audit_store(data_dir)

    def measure(path: str) -> dict:
        output = subprocess.run(
            [sys.executable, __file__, "--child", path, "--data-dir", str(data_dir), "--page-size", str(args.page_size),
             "--lines", str(args.lines)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if output.returncode:
            raise SystemExit(output.stderr[-4000:])
        return json.loads(output.stdout.strip().splitlines()[-1])

    try:
        figures = {path: measure(path) for path in ("bare", "bare-skip", "product", "bare-journal", "product-journal")}
    finally:
        sandbox.terminate()
    print(
        f"\nAcumatica, {args.bills:,} AP bills with lines over {HISTORY_DAYS} days; slices/pages of {args.page_size:,}"
    )
    print(f"{'path':<46}{'records':>9}{'seconds':>9}{'per s':>9}{'requests':>10}{'peak RSS MB':>13}{'CPU s':>8}")
    names = {
        "product": "(a) product: Bill asset → DuckDB",
        "bare": "(b) bare: the product's scan and slices",
        "bare-skip": "(b') bare $top/$skip loop (loses movers)",
        "product-journal": f"(c) product: {args.lines:,}-line GL batch, engine",
        "bare-journal": "(d) bare: the same PUT",
    }
    for path, name in names.items():
        f = figures[path]
        print(
            f"{name:<46}{f['records']:>9,}{f['seconds']:>9.2f}{f['records'] / f['seconds']:>9,.0f}{f['requests']:>10,}"
            f"{f['peak_rss_mb']:>13,.0f}{f['cpu_seconds']:>8.1f}"
        )

    def ratio(a: str, b: str) -> float:
        return (figures[a]["records"] / figures[a]["seconds"]) / (figures[b]["records"] / figures[b]["seconds"])

    print(f"\nratio (a)/(b) records/s: {ratio('product', 'bare'):.2f}   (target ≥ 0.8; peak RSS of (a) < 500 MB)")
    print(f"ratio (a)/(b') records/s: {ratio('product', 'bare-skip'):.2f}   (against $skip paging, for reference)")
    print(f"ratio (c)/(d) lines/s:   {ratio('product-journal', 'bare-journal'):.2f}   (target ≥ 0.9)")


if __name__ == "__main__":
    main()
