#!/usr/bin/env bash
# Install Prefect 3 into its own virtual environment for the hand-off tests (its pins conflict
# with eventflow's), keyed by the version and kept across runs in ~/.cache/eventflow-test
# (EVENTFLOW_TEST_CACHE moves it). fastapi is pinned: with a newer one `prefect server start`
# fails on import ("Body() got an unexpected keyword argument 'min_items'").
set -euo pipefail
source "$(dirname "$0")/cached-venv.sh"

version="${PREFECT_VERSION:-3.8.8}"
cache="${EVENTFLOW_TEST_CACHE:-$HOME/.cache/eventflow-test}"
cached_venv "$cache/prefect-$version/venv" "prefect==$version" "fastapi==0.154.0"
