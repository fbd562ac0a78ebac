"""The pure rules core: evaluations per second with 1,000 rules and 100,000 open partitions."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from eventflow.events import InputRef, partition_key
from eventflow.rules import MatchState, RuleSpec, on_input

RULES = 1000
OPEN = 100_000
EVALS = 200_000


def run(repeat: int = 3) -> dict[str, float]:
    """Best of ``repeat`` runs (the machine's noise only ever slows a run down)."""
    runs = [_run() for _ in range(repeat)]
    return max(runs, key=lambda r: r["evaluations_per_second"])


def _run() -> dict[str, float]:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    specs = [
        RuleSpec(f"r{i}", "all", (f"a{i}", f"b{i}"), ("dt", "hr"), within=timedelta(hours=2))
        for i in range(RULES)
    ]
    states: dict[tuple[str, str], MatchState] = {}

    def ref(ds: str, dt: str, hr: str, n: int) -> InputRef:
        return InputRef(f"e{n}", ds, {"dt": dt, "hr": hr}, "s", {"offset": n}, now.isoformat())

    # 100,000 open partial matches: dataset a of each (rule, partition) has arrived.
    n = 0
    for i in range(OPEN):
        spec = specs[i % RULES]
        r = ref(spec.datasets[0], f"2024-01-{i // 2400 + 1:02d}", f"{i % 24:02d}", n)
        n += 1
        key = partition_key(spec.key_of(r.partition))
        states[(spec.name, key)] = on_input(spec, None, r, now).state
    # Half of the evaluations complete an open match, half open new ones.
    inputs = []
    for i in range(EVALS):
        spec = specs[i % RULES]
        if i % 2 == 0:
            j = i // 2 % OPEN
            spec = specs[j % RULES]
            dt, hr = f"2024-01-{j // 2400 + 1:02d}", f"{j % 24:02d}"
            inputs.append((spec, ref(spec.datasets[1], dt, hr, n)))
        else:
            inputs.append((spec, ref(spec.datasets[0], "2025-01-01", f"{i % 10_000}", n)))
        n += 1
    fires = 0
    start = time.perf_counter()
    for spec, r in inputs:
        key = partition_key(spec.key_of(r.partition))
        step = on_input(spec, states.get((spec.name, key)), r, now, key)
        states[(spec.name, key)] = step.state
        fires += sum(1 for e in step.effects if type(e).__name__ == "Fire")
    elapsed = time.perf_counter() - start
    return {
        "rules": RULES,
        "open_partitions": OPEN,
        "evaluations": EVALS,
        "fires": fires,
        "seconds": elapsed,
        "evaluations_per_second": EVALS / elapsed,
    }


def report(result: dict[str, float]) -> str:
    return (
        f"rules core: {result['evaluations_per_second']:,.0f} evaluations/s"
        f" ({result['evaluations']:,} evaluations, {result['rules']:,} rules,"
        f" {result['open_partitions']:,} open partitions, {result['fires']:,} fires)"
    )
