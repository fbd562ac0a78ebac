#!/usr/bin/env bash
# Install Dagster into its own virtual environment for the hand-off tests (its pins conflict
# with eventflow's). The venv is keyed by the version and kept across runs, so a rerun costs
# a fraction of a second; set EVENTFLOW_TEST_CACHE to put it elsewhere than ~/.cache.
# dagster and dagster-webserver are released together: pin both to the same version.
set -euo pipefail

version="${DAGSTER_VERSION:-1.13.27}"
cache="${EVENTFLOW_TEST_CACHE:-$HOME/.cache/eventflow-test}"
venv="$cache/dagster-$version/venv"

if [ -x "$venv/bin/dagster" ] && [ -f "$venv/.complete" ]; then
  exit 0
fi
echo "installing Dagster $version into $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "dagster==$version" "dagster-webserver==$version"
touch "$venv/.complete"
