"""The quickstart's task: count the input events and write a small report."""

import argparse
import json
import os
import pathlib

parser = argparse.ArgumentParser()
parser.add_argument("--date", required=True)
parser.add_argument("--run", required=True)
args = parser.parse_args()

events = json.loads(pathlib.Path(os.environ["EVENTFLOW_EVENTS"]).read_text())
out = pathlib.Path("out") / f"report-{args.date}.txt"
out.parent.mkdir(exist_ok=True)
lines = [f"report for {args.date} (run {args.run}, attempt {os.environ['EVENTFLOW_ATTEMPT']})"]
lines += [f"  {e['dataset']}: {e['position']['path']}" for e in events]
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
