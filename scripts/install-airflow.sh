#!/usr/bin/env bash
# Install Apache Airflow into its own virtual environment for the hand-off tests (its pins
# conflict with eventflow's). The venv is keyed by the version and cached across runs: a
# rerun only checks that it is complete and costs well under a second.
#   AIRFLOW_VERSION   the version to install (default 3.3.2)
#   EVENTFLOW_TEST_CACHE   where the venvs live (default ~/.cache/eventflow-test)
# Prints the venv's path.
set -euo pipefail

version="${AIRFLOW_VERSION:-3.3.2}"
cache="${EVENTFLOW_TEST_CACHE:-$HOME/.cache/eventflow-test}"
venv="$cache/airflow-$version/venv"
python="${PYTHON:-python3}"

# The marker is written last: a venv without it is a half-finished install and is rebuilt.
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  echo "installing apache-airflow==$version into $venv" >&2
  log="$(dirname "$venv")/install.log"
  # The official constraints file is not reachable from every machine; pip's resolver finds
  # a working set of dependencies. pip's output goes to the log, shown when it fails.
  if ! { "$python" -m venv "$venv" \
      && "$venv/bin/python" -m pip install --upgrade pip \
      && "$venv/bin/python" -m pip install "apache-airflow==$version" \
      && "$venv/bin/airflow" version; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "installing apache-airflow==$version failed; the whole log: $log" >&2
    exit 1
  fi
  touch "$venv/.complete"
fi
echo "$venv"
