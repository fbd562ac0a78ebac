"""``async with`` for plugins that hold a connection: enter opens, exit closes."""

from __future__ import annotations

from typing import Self


class Resource:
    """A publisher or sender whose ``open`` connects and whose ``close`` releases; using it in
    ``async with`` does both. Subclasses implement the two methods."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
