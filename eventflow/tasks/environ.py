"""The partition as environment variables: how a script reads a value as data, never as code.

Every ``command`` run gets ``EVENTFLOW_VAR_<NAME>`` for each partition variable, ``<NAME>``
being the variable's name upper-cased with every character that is not a letter, digit or
``_`` replaced by ``_`` (``dt`` is ``EVENTFLOW_VAR_DT``). So ``sh -c 'echo "$EVENTFLOW_VAR_N"'``
prints the value whatever it holds: the shell expands a quoted variable into one word and
never parses its content.

Two names that give the same variable (``dt`` and ``DT``): the one that sorts first wins.
A value holding a NUL character (which no environment can carry) is left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PREFIX = "EVENTFLOW_VAR_"
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


def env_name(variable: str) -> str:
    """``EVENTFLOW_VAR_<NAME>`` of a partition variable (``dt``: ``EVENTFLOW_VAR_DT``)."""
    return PREFIX + _NOT_IDENTIFIER.sub("_", variable).upper()


def partition_environ(partition: Mapping[str, object]) -> dict[str, str]:
    """The ``EVENTFLOW_VAR_*`` variables of ``partition`` (see the module docs)."""
    out: dict[str, str] = {}
    for name in sorted(partition, reverse=True):  # the first in sort order is written last
        text = str(partition[name])
        if "\0" not in text:
            out[env_name(name)] = text
        else:
            out.pop(env_name(name), None)
    return out
