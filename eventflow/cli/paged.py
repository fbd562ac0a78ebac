"""What the listing commands (``runs``, ``deadletters``) share: the paging options and the
printing of pages, as a table with "showing 50 of 12,345" or as one JSON array.

``--json`` stays a JSON array (the contract scripts rely on): the truncation notice goes to
stderr. ``--all`` reads page after page and prints each as it comes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import click

from eventflow.cli.common import err, out, with_store
from eventflow.events import utcnow
from eventflow.pipeline import CompiledPipeline
from eventflow.types import Store
from eventflow.views import paging
from eventflow.views.paging import Page

T = TypeVar("T")
ALL_PAGE = 1000
"""Items read at once by ``--all``."""


class Item(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


ItemT = TypeVar("ItemT", bound=Item)


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``/``--until``: an ISO 8601 time or a duration before now."""
    if value is None:
        return None
    try:
        return paging.parse_time(value, utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def paging_options(noun: str, when: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``--since``, ``--until``, ``--limit`` and ``--all`` for a list of ``noun``, whose
    time is ``when`` (``created``)."""

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        for option in reversed(
            [
                click.option(
                    "--since",
                    callback=_time,
                    help=f"{when} at or after: ISO 8601 or a duration before now (2h).",
                ),
                click.option(
                    "--until", callback=_time, help=f"{when} before: ISO 8601 or a duration."
                ),
                click.option("--limit", default=50, show_default=True, help=f"Most {noun}."),
                click.option(
                    "--all", "all_", is_flag=True, help=f"Every one of the {noun} (streamed)."
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


def stream_json(items: Sequence[Any], *, first: bool) -> None:
    """A part of one JSON array printed as it is read (``first``: it opens the array; the
    caller prints the closing ``]``), so a long list needs no memory for all of it."""
    for n, item in enumerate(items):
        lead = "[\n" if first and n == 0 else ",\n"
        click.echo(lead + json.dumps(item, indent=2, default=str), nl=False)
    if first and not items:
        click.echo("[", nl=False)
    click.echo("\n" if items else "", nl=False)


def print_pages(
    pipeline: CompiledPipeline,
    query: Callable[..., Awaitable[Page[ItemT]]],
    *,
    limit: int,
    all_: bool,
    as_json: bool,
    render: Callable[[list[ItemT]], None],
) -> None:
    """The first page of ``limit`` items of ``query`` (a view's page function with its
    filters bound; every page with ``all_``) as JSON or through ``render``, then how many
    of the total were shown when not all were."""

    async def pages(store: Store) -> None:
        cursor: str | None = None
        shown: list[ItemT] = []  # what the table shows; JSON is printed page by page
        count = 0
        while True:
            page = await query(store, limit=ALL_PAGE if all_ else limit, cursor=cursor)
            if as_json:
                stream_json([i.to_dict() for i in page.items], first=cursor is None)
            else:
                shown.extend(page.items)
            count += len(page.items)
            cursor = page.next
            if not all_ or cursor is None:
                break
        if as_json:
            click.echo("]")
        else:
            render(shown)
        if count < page.total:
            notice = f"showing {count:,} of {page.total:,} (use --limit/--all)"
            (err if as_json else out).print(notice, markup=False)

    with_store(pipeline, pages)
