#!/usr/bin/env bash
# Runs the quickstart end to end: start eventflow, land files, watch the join fire.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
EVENTFLOW=${EVENTFLOW:-eventflow}
cd "$here"
rm -rf .eventflow landing out
mkdir -p landing out

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
land() {  # write to a temporary name, then rename into place: the file is complete at once
  mkdir -p "landing/$(dirname "$1")"
  printf '%s\n' "$2" > "landing/$1.tmp"
  mv "landing/$1.tmp" "landing/$1"
  echo "landed landing/$1"
}
wait_for_runs() {  # wait until N runs succeeded
  for _ in $(seq 1 100); do
    n=$("$EVENTFLOW" runs pipeline.yaml --json --status succeeded | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$n" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 succeeded runs" >&2; return 1
}

say "eventflow validate"
"$EVENTFLOW" validate pipeline.yaml

say "eventflow run (in the background, logs in out/eventflow.log)"
"$EVENTFLOW" run pipeline.yaml --log-format console > out/eventflow.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1

say "Land orders for 2024-01-01: the join waits for inventory"
land orders/dt=2024-01-01/part-0.csv "id,amount"
land orders/dt=2024-01-01/_SUCCESS ""
sleep 0.5
"$EVENTFLOW" why pipeline.yaml daily_report dt=2024-01-01

say "Land inventory for 2024-01-01: daily_report fires, then announce_report (chained)"
land inventory/dt=2024-01-01/inventory.csv "sku,qty"
wait_for_runs 2
"$EVENTFLOW" runs pipeline.yaml

say "Land orders for 2024-01-02 only: a partial match, missing inventory"
land orders/dt=2024-01-02/_SUCCESS ""
sleep 0.5
"$EVENTFLOW" status pipeline.yaml

say "The report the task wrote"
cat out/report-2024-01-01.txt

say "Completion events (CloudEvents 1.0 JSON lines in out/events.jsonl)"
python3 - <<'PY'
import json
for line in open("out/events.jsonl"):
    e = json.loads(line)
    print(f"{e['type']:<30} {e['subject']}")
PY

say "Stop eventflow (SIGTERM drains gracefully)"
kill -TERM $pid
wait $pid
trap - EXIT
echo "done: run it again with 'make quickstart', or read docs/quickstart.md"
