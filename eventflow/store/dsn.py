"""The options of a state store DSN's query string, checked when the DSN is read.

Stores read their options in ``from_dsn``, which ``eventflow validate`` calls too: a bad
option is reported before anything starts, with the option, the value written and what is
accepted, never first at ``eventflow run``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from urllib.parse import SplitResult, parse_qsl, urlsplit

from eventflow.errors import StoreError

MAX_SECONDS = 86_400.0
"""The longest time an option in seconds may name (a day): every one of them is a wait
(a lock, a lease, reconnecting) that a longer value would only hide a fault behind."""


def split(dsn: str, shown: str, hint: str) -> SplitResult:
    """``dsn`` split into its parts; StoreError (naming ``shown``, the DSN as it may be
    printed) when it is not a URL at all, e.g. an unclosed ``[`` of an IPv6 host."""
    try:
        parts = urlsplit(dsn)
        _ = parts.port  # parsed on first use: a port that is not a number fails here
    except ValueError as exc:
        raise StoreError(f"the state DSN {shown!r} is not a URL: {exc}", hint=hint) from None
    return parts


def options(query: str) -> dict[str, str]:
    """The ``name=value`` options of a query string; the last of a repeated name wins."""
    return dict(parse_qsl(query, keep_blank_values=True))


def seconds(name: str, raw: str, shown: str, *, default: float, zero: bool = False) -> float:
    """The option ``name`` as a number of seconds, positive (or zero when ``zero``), finite
    and at most :data:`MAX_SECONDS`; StoreError saying what it accepts."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low_ok = value >= 0 if zero else value > 0
    if not (low_ok and value <= MAX_SECONDS):  # NaN fails both
        accepted = f"from 0 to {MAX_SECONDS:g}" if zero else f"above 0, at most {MAX_SECONDS:g}"
        raise StoreError(
            f"the option {name}={raw!r} in {shown!r} is not a number of seconds {accepted}",
            hint=f"write e.g. {name}={default:g}",
        )
    return value


def choice(name: str, raw: str, shown: str, accepted: Mapping[str, str]) -> str:
    """The option ``name``, one of ``accepted`` (value to what it means), any case."""
    value = raw.lower()
    if value not in accepted:
        listed = "; ".join(f"{k} ({meaning})" for k, meaning in accepted.items())
        raise StoreError(
            f"the option {name}={raw!r} in {shown!r} is not one of {', '.join(accepted)}",
            hint=f"accepted: {listed}",
        )
    return value


def no_others(found: Mapping[str, str], shown: str, known: Collection[str]) -> None:
    """StoreError naming the options in ``found`` (name to value), which the store does
    not know."""
    if found:
        written = ", ".join(f"{name}={value!r}" for name, value in sorted(found.items()))
        raise StoreError(
            f"unknown option(s) {written} in {shown!r}",
            hint=f"this store accepts: {', '.join(known)}",
        )
