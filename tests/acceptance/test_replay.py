"""``eventflow replay`` through the real CLI: after a rule change, only what never fired fires."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.acceptance.harness import Project, lines, wait_until

PY = sys.executable
TASK = "import sys\nwith open('runs.log', 'a') as f:\n    f.write(' '.join(sys.argv[1:]) + '\\n')\n"

PIPELINE = f"""
name: replay
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 200ms}}}}
datasets:
  orders: {{sensor: landing, key: "orders/dt={{dt}}/_SUCCESS"}}
  refunds: {{sensor: landing, key: "refunds/dt={{dt}}/refunds.csv"}}
rules:
  report:
    when: {{MODE: [orders, refunds], by: [dt]}}
    run: {{command: [{PY}, task.py, report, "{{dt}}"]}}
"""
V1 = PIPELINE.replace("MODE", "all")
# The change: the report no longer waits for refunds, and a new rule audits every order.
V2 = PIPELINE.replace("MODE", "any") + (
    f"""
  audit:
    when: {{any: [orders]}}
    run: {{command: [{PY}, task.py, audit, "{{dt}}"]}}
"""
)
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


def ran(p: Project) -> Counter[str]:
    return Counter(lines(p.root / "runs.log"))


def fired(report: dict[str, Any]) -> list[tuple[str, str, int]]:
    return sorted((f["rule"], f["partition"]["dt"], f["generation"]) for f in report["fired"])


def test_replay_after_a_rule_change_fires_only_what_did_not_fire_before(tmp_path: Path) -> None:
    """Events logged under the old rules, replayed under the new ones, fire each partition
    the new rules accept once; what fired before does not fire again, and a second replay
    fires nothing. With --force, everything replayed fires once more (a dry run here)."""
    (tmp_path / "task.py").write_text(TASK)
    p = Project(tmp_path, V1)
    p.start()
    for dt in DAYS:
        p.land(f"orders/dt={dt}/_SUCCESS")
    p.land(f"refunds/dt={DAYS[0]}/refunds.csv")
    wait_until(lambda: ran(p) == Counter([f"report {DAYS[0]}"]))
    assert p.stop() == 0

    p.file.write_text(V2)
    expected = [
        *[("audit", dt, 1) for dt in DAYS],
        ("report", DAYS[1], 1),
        ("report", DAYS[2], 1),
    ]
    assert fired(p.cli_json("replay", "--since", "1h", "--dry-run")) == expected
    assert len(p.runs()) == 1  # the dry run created nothing
    replayed = p.cli_json("replay", "--since", "1h")
    assert replayed["events"] == 4
    assert fired(replayed) == expected
    assert fired(p.cli_json("replay", "--since", "1h")) == []  # fire keys: nothing twice
    assert fired(p.cli_json("replay", "--since", "1m", "--sensor", "landing")) == []

    p.start()  # the runs the replay fired are executed by `eventflow run`
    wait_until(lambda: len(ran(p)) == 6)
    assert p.stop() == 0
    assert ran(p) == Counter(
        [f"report {dt}" for dt in DAYS] + [f"audit {dt}" for dt in DAYS]
    )  # each once

    forced = p.cli_json("replay", "--since", "1h", "--force", "--dry-run")
    assert fired(forced) == sorted(
        [("audit", dt, 2) for dt in DAYS] + [("report", dt, 2) for dt in DAYS]
    )
    future = p.cli_json("replay", "--since", "2099-01-01")
    assert (future["events"], future["fired"]) == (0, [])
    bad = p.cli("replay", str(p.file), "--since", "1h", "--sensor", "nope", check=False)
    assert bad.returncode == 1
    assert "no sensor 'nope'" in bad.stderr
