#!/usr/bin/env bash
# The dlt contender's own virtual environment, bench/.venv-dlt, apart from the product's .venv so
# the product's pins are untouched. Idempotent: once the pins below are installed it returns at once.
#
#     bash bench/dlt_venv.sh          # PYTHON=python3.11 by default
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-dlt"
# dlt with its duckdb extra, and its parquet extra for `--dlt-file-format parquet`; duckdb and pyarrow
# pinned to the product's own pins (pyproject.toml), so both write with the same engine.
pins=("dlt[duckdb,parquet]==1.31.0" "duckdb==2.0.0" "pyarrow==26.0.1")
stamp="$venv/.bench-pins"

if [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "${pins[*]}" ]]; then
    exit 0
fi
[[ -x $venv/bin/python ]] || "${PYTHON:-python3.11}" -m venv "$venv"
"$venv/bin/pip" install --quiet "${pins[@]}"
printf '%s' "${pins[*]}" >"$stamp"
echo "bench/.venv-dlt ready: ${pins[*]}"
