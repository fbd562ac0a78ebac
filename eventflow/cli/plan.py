"""``eventflow plan`` and ``eventflow versions``: what a changed file would do to live
state, and which versions ran on the store (:mod:`eventflow.plan`, :mod:`eventflow.versions`)."""

from __future__ import annotations

from pathlib import Path

import click

from eventflow.cli.common import ENV_OPT, FILE, JSON_OPT, err, load, out, print_json, with_store
from eventflow.plan import Plan
from eventflow.types import Store
from eventflow.version_records import StoreIdentity, VersionStart
from eventflow.views.versions import changed_since

_MARK = {True: "!", False: "~"}


@click.command()
@FILE
@JSON_OPT
@ENV_OPT
@click.option(
    "--accept",
    "accept",
    multiple=True,
    metavar="ID",
    help="Plan as `eventflow run --accept ID` would (repeatable).",
)
def plan(file: Path, as_json: bool, env: str | None, accept: tuple[str, ...]) -> None:
    """Compare FILE with the version its store last ran: what each change does to open
    matches, timers and runs. Exit 0: nothing changed; 1: changes listed; 2: invalid file."""
    from eventflow.migrate import plan_for

    pipeline = load(file, env)

    async def read(store: Store) -> tuple[Plan, StoreIdentity | None]:
        return await plan_for(pipeline, store, accept), await store.store_identity()

    result, identity = with_store(pipeline, read)
    wrong = identity is not None and identity.environment != pipeline.environment
    if as_json:
        data = result.to_dict()
        data["store"] = identity.to_dict() if identity else None
        print_json(data)
    else:
        _print_plan(result, identity)
    if wrong:
        assert identity is not None
        err.print(
            f"error: the store belongs to environment `{identity.environment}`, this file"
            f" runs as `{pipeline.environment}`: `eventflow run` would refuse it",
            markup=False,
        )
    raise SystemExit(1 if result.changed or wrong else 0)


def _print_plan(result: Plan, identity: StoreIdentity | None) -> None:
    prev = result.previous
    where = f"store {identity.short_id} ({identity.environment})" if identity else "a new store"
    head = f"pipeline {result.pipeline}, environment {result.environment}: version {result.version}"
    if prev is None:
        out.print(f"{head}; nothing ran on {where} yet", markup=False)
    elif prev.version == result.version:
        out.print(f"{head}; {where} last ran the same version: no changes", markup=False)
        return
    else:
        out.print(
            f"{head}; {where} last ran {prev.version}"
            f" (started {prev.started_at:%Y-%m-%d %H:%M:%S} UTC on {prev.worker})",
            markup=False,
        )
    for line in result.lines:
        mark = "+" if line.kind.endswith("_added") else _MARK[line.destructive]
        out.print(f"  {mark} {line.id}: {line.subject} {line.detail}", markup=False)
        out.print(f"      effect: {line.effect}", markup=False)
        if line.refused:
            out.print(
                f"      refused by `eventflow run`: accept with --accept {line.id}"
                + (
                    " or `migrations.orphans: keep|expire|drop`"
                    if line.kind in ("rule_removed", "by_changed", "pattern_changed")
                    else ""
                ),
                markup=False,
            )
        elif line.destructive:
            out.print(f"      accepted by {line.accepted_by}", markup=False)
    refused = len(result.refused)
    out.print(
        f"{len(result.lines)} change(s); {refused} refused by `eventflow run` until accepted",
        markup=False,
    )


@click.command()
@FILE
@JSON_OPT
@ENV_OPT
@click.option("--limit", default=50, show_default=True, help="Newest starts to list.")
def versions(file: Path, as_json: bool, env: str | None, limit: int) -> None:
    """List the versions that ran on the store: when each started, on which worker, at
    which git commit, and what changed from the start before."""
    pipeline = load(file, env)

    async def read(store: Store) -> tuple[list[VersionStart], StoreIdentity | None]:
        return await store.list_starts(limit + 1), await store.store_identity()

    starts, identity = with_store(pipeline, read)
    rows = []
    for i, start in enumerate(starts[:limit]):
        before = starts[i + 1] if i + 1 < len(starts) else None
        changes = changed_since(before, start)
        rows.append((start, changes))
    if as_json:
        print_json(
            {
                "store": identity.to_dict() if identity else None,
                "current": pipeline.version.id,
                "starts": [{**s.to_dict(), "changes": c} for s, c in rows],
            }
        )
        return
    if identity is not None:
        out.print(
            f"store {identity.store_id} of environment {identity.environment},"
            f" made {identity.created_at:%Y-%m-%d %H:%M:%S} UTC; this file is version"
            f" {pipeline.version.id}",
            markup=False,
        )
    if not rows:
        out.print("no version has run on this store yet", markup=False)
    for start, changes in rows:
        git = ""
        if start.git_commit:
            git = f" git {start.git_commit[:10]}{' (dirty)' if start.git_dirty else ''}"
        what = ", ".join(changes) if changes else "no changes"
        accepted = (
            f"; accepted: {', '.join(str(a['id']) for a in start.accepted)}"
            if start.accepted
            else ""
        )
        out.print(
            f"#{start.seq} {start.started_at:%Y-%m-%d %H:%M:%S} {start.version}"
            f" {start.environment} on {start.worker}{git}: {what}{accepted}",
            markup=False,
        )
