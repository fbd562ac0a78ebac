"""Which arguments of a command are code for an interpreter (``sh -c SCRIPT``, ``python -c``).

A ``{var}`` substituted into such an argument lets a value from an event (a file name, a
message field) change the program that runs: ``sh -c "echo {n}"`` with ``n`` set to
``$(rm -rf ~)`` runs ``rm``. ``eventflow validate`` refuses that; this module finds the
arguments it looks at. Programs are recognised by their base name (``/bin/sh`` and
``sh`` alike), through the wrappers that run another program (``env``, ``/usr/bin/env``,
``busybox``, ``nice``, ``nohup``, ``setsid``, ``timeout``, ``stdbuf``, ``sudo``, ``exec``).

- shells (sh, bash, dash, zsh, ksh, mksh, ash, yash, posh, fish, csh, tcsh): the script
  after ``-c`` (or an option cluster holding ``c``: ``-ec``); the arguments after the
  script are its positional parameters (``$1``...) and are safe;
- python, pypy: the code after ``-c``; perl: after ``-e``/``-E``; ruby, lua: ``-e``;
  node, deno, bun: ``-e``/``--eval``/``-p``/``--print``; php: ``-r``; Rscript: ``-e``;
- awk, gawk, mawk, nawk: the program (the first operand, unless ``-f`` names a file);
- ssh: every argument after the host, which the remote shell runs as one command line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "fish", "csh", "tcsh"}
)
"""Shells, whose script ``{var!sh}`` quoting makes safe."""

_CODE_FLAGS: dict[str, frozenset[str]] = {
    "python": frozenset({"-c"}),
    "pypy": frozenset({"-c"}),
    "perl": frozenset({"-e", "-E"}),
    "ruby": frozenset({"-e"}),
    "lua": frozenset({"-e"}),
    "node": frozenset({"-e", "--eval", "-p", "--print"}),
    "nodejs": frozenset({"-e", "--eval", "-p", "--print"}),
    "deno": frozenset({"eval"}),
    "bun": frozenset({"-e", "--eval", "-p", "--print"}),
    "php": frozenset({"-r"}),
    "Rscript": frozenset({"-e"}),
}
_AWKS = frozenset({"awk", "gawk", "mawk", "nawk"})
_VERSIONED = re.compile(r"^(python|pypy|perl|ruby|lua|php)[0-9.]*$")
"""``python3.11``, ``perl5.36``, ``lua5.4``: the interpreter without its version."""

_WRAPPERS_PLAIN = frozenset({"nohup", "setsid", "exec", "command", "builtin"})
_SSH_VALUE_OPTIONS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


@dataclass(frozen=True, slots=True)
class InlineCode:
    """Argument ``index`` of a command is code run by ``interpreter`` (a base name)."""

    index: int
    interpreter: str

    @property
    def shell(self) -> bool:
        """Whether the interpreter is a POSIX-style shell (``{var!sh}`` quoting applies)."""
        return self.interpreter in SHELLS or self.interpreter == "ssh"


def inline_code(argv: Sequence[str]) -> list[InlineCode]:
    """The arguments of ``argv`` that an interpreter runs as code (see the module docs)."""
    return _scan(list(argv), 0, depth=0)


def program_name(program: str) -> str:
    """The base name of ``program`` without a version suffix (``/usr/bin/python3.11``: python)."""
    name = program.rstrip("/").rpartition("/")[2]
    m = _VERSIONED.match(name)
    return m.group(1) if m else name


def _scan(argv: list[str], start: int, depth: int) -> list[InlineCode]:
    if start >= len(argv) or depth > 8:
        return []
    name = program_name(argv[start])
    rest = start + 1
    if name == "env":
        return _after_env(argv, rest, depth)
    if name == "busybox" or name in _WRAPPERS_PLAIN:
        return _scan(argv, rest, depth + 1)
    if name in ("nice", "timeout", "stdbuf", "sudo", "doas", "chrt", "ionice", "taskset"):
        return _scan(argv, _skip_wrapper_options(name, argv, rest), depth + 1)
    if name in SHELLS:
        return _shell(argv, rest, name)
    if name in _AWKS:
        return _awk(argv, rest, "awk")
    if name == "ssh":
        return _ssh(argv, rest)
    flags = _CODE_FLAGS.get(name)
    if flags is not None:
        return _flagged(argv, rest, name, flags)
    return []


def _after_env(argv: list[str], i: int, depth: int) -> list[InlineCode]:
    """``env [-i] [-u NAME] [NAME=VALUE]... PROGRAM``; ``-S STRING`` is split and scanned."""
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-u", "--unset", "-C", "--chdir"):
            i += 2
        elif arg in ("-S", "--split-string") or arg.startswith(("-S", "--split-string=")):
            if arg in ("-S", "--split-string"):
                split, i = argv[i + 1] if i + 1 < len(argv) else "", i + 2
            else:
                split, i = arg.split("=", 1)[1] if "=" in arg else arg[2:], i + 1
            try:
                words = shlex.split(split)
            except ValueError:
                words = split.split()
            found = _scan([*words, *argv[i:]], 0, depth + 1)
            # A finding inside the split string is the -S argument itself.
            return [
                InlineCode(
                    i - 1 if f.index < len(words) else i + f.index - len(words), f.interpreter
                )
                for f in found
            ]
        elif arg.startswith("-") or ("=" in arg and not arg.startswith("=")):
            i += 1
        else:
            break
    return _scan(argv, i, depth + 1)


def _skip_wrapper_options(name: str, argv: list[str], i: int) -> int:
    """The index of the program a wrapper runs: past its options and their values."""
    with_value = {
        "nice": {"-n", "--adjustment"},
        "timeout": {"-s", "--signal", "-k", "--kill-after"},
        "stdbuf": {"-i", "-o", "-e"},
        "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-R", "-T", "-U"},
        "doas": {"-u", "-C"},
        "ionice": {"-c", "-n", "-p"},
    }.get(name, set())
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--":
            i += 1
            break
        i += 2 if argv[i] in with_value else 1
    if name in ("timeout", "chrt", "taskset") and i < len(argv):
        i += 1  # the duration, priority or mask before the program
    return i


def _shell(argv: list[str], i: int, name: str) -> list[InlineCode]:
    """``sh [options] -c SCRIPT [NAME [ARG...]]``: the first operand after the options."""
    command = False
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-o", "+o", "-O", "+O"):
            i += 2
            continue
        if len(arg) > 1 and arg[0] in "-+" and not arg.startswith("--"):
            command = command or (arg[0] == "-" and "c" in arg[1:])
            i += 1
            continue
        if arg.startswith("--"):
            i += 1
            continue
        break
    if command and i < len(argv):
        return [InlineCode(i, name)]
    return []


def _flagged(argv: list[str], i: int, name: str, flags: frozenset[str]) -> list[InlineCode]:
    """``python -c CODE``, ``perl -e CODE`` (also ``-cCODE``, ``-ecode``, ``--eval=CODE``)."""
    found = []
    while i < len(argv):
        arg = argv[i]
        if arg in flags:
            if i + 1 < len(argv):
                found.append(InlineCode(i + 1, name))
            i += 2
            continue
        long = next((f for f in flags if f.startswith("--") and arg.startswith(f + "=")), None)
        short = next(
            (f for f in flags if len(f) == 2 and arg.startswith(f) and not arg.startswith("--")),
            None,
        )
        if long is not None or short is not None:
            found.append(InlineCode(i, name))
        elif name in ("python", "pypy") and _python_cluster(arg):
            found.append(InlineCode(i + 1, name) if arg.endswith("c") else InlineCode(i, name))
            i += 1
        elif not arg.startswith("-") and name not in ("perl", "ruby", "node", "nodejs", "bun"):
            break  # a script file: the rest are its arguments
        i += 1
    return [f for f in found if f.index < len(argv)]


def _python_cluster(arg: str) -> bool:
    """``-Ic``, ``-uc``: Python's single-letter options followed by ``c`` (and its code)."""
    if not arg.startswith("-") or arg.startswith("--") or "c" not in arg:
        return False
    letters = arg[1 : arg.index("c")]
    return bool(letters) and all(ch in "bBdEhiIOPqsSuvx" for ch in letters)


def _awk(argv: list[str], i: int, name: str) -> list[InlineCode]:
    """``awk [-F SEP] [-v VAR=VALUE] 'PROGRAM' FILE...`` (no program with ``-f FILE``)."""
    while i < len(argv):
        arg = argv[i]
        if arg in ("-f", "--file") or arg.startswith("-f"):
            return []
        if arg in ("-F", "-v", "--assign", "--field-separator"):
            i += 2
        elif arg == "--":
            i += 1
            break
        elif arg.startswith("-") and len(arg) > 1:
            i += 1
        else:
            break
    return [InlineCode(i, name)] if i < len(argv) else []


def _ssh(argv: list[str], i: int) -> list[InlineCode]:
    """``ssh [options] HOST COMMAND...``: the remote shell runs the command words joined."""
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("-") and len(arg) > 1:
            i += 2 if len(arg) == 2 and arg[1] in _SSH_VALUE_OPTIONS else 1
            continue
        break
    return [InlineCode(j, "ssh") for j in range(i + 1, len(argv))]
