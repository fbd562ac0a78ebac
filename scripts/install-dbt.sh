#!/usr/bin/env bash
# Install dbt-core and the DuckDB adapter into their own virtual environment for the dbt
# example's test (examples/dbt), kept across runs in ~/.cache/eventflow-test
# (EVENTFLOW_TEST_CACHE moves it). Both stay on 1.9: the newest dbt-duckdb pulls a dependency
# that downloads a wheel from a code host at install time, which fails offline.
set -euo pipefail
source "$(dirname "$0")/cached-venv.sh"

cache="${EVENTFLOW_TEST_CACHE:-$HOME/.cache/eventflow-test}"
cached_venv "$cache/dbt-1.9.x-duckdb-1.9.x/venv" "dbt-core==1.9.*" "dbt-duckdb==1.9.*"
