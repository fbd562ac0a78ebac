"""Which command arguments are an interpreter's inline code, and the shell-quoting conversion."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from eventflow.events import Observation, observation_problem, partition_problem, quarantine
from eventflow.patterns import placeholders, render, template_fields
from eventflow.tasks.environ import partition_environ
from eventflow.tasks.inline import inline_code


@pytest.mark.parametrize(
    ("argv", "found"),
    [
        (["sh", "-c", "echo {n}"], [(2, "sh")]),
        (["/bin/bash", "-ec", "echo", "bash", "{n}"], [(2, "bash")]),
        (["dash", "-o", "errexit", "-c", "x"], [(4, "dash")]),
        (["/usr/bin/env", "bash", "-c", "x"], [(3, "bash")]),
        (["env", "-i", "A=1", "-u", "B", "zsh", "-c", "x"], [(7, "zsh")]),
        (["env", "-S", "sh -c", "x"], [(3, "sh")]),
        (["busybox", "sh", "-c", "x"], [(3, "sh")]),
        (["timeout", "-s", "KILL", "5", "ksh", "-c", "x"], [(6, "ksh")]),
        (["nice", "-n", "5", "ash", "-c", "x"], [(5, "ash")]),
        (["python3", "-c", "x"], [(2, "python")]),
        (["/usr/bin/python3.11", "-I", "-c", "x"], [(3, "python")]),
        (["python3", "-Ic", "x"], [(2, "python")]),
        (["perl", "-E", "x"], [(2, "perl")]),
        (["ruby", "-e", "x"], [(2, "ruby")]),
        (["node", "--eval=x"], [(1, "node")]),
        (["node", "-p", "x"], [(2, "node")]),
        (["gawk", "-F", ",", "{print $1}", "file"], [(3, "awk")]),
        (["ssh", "-p", "22", "host", "ls", "x"], [(4, "ssh"), (5, "ssh")]),
        (["sh", "script.sh", "{n}"], []),
        (["bash", "-e", "script.sh", "{n}"], []),
        (["python3", "script.py", "-c", "{n}"], []),
        (["awk", "-f", "prog.awk", "{n}"], []),
        (["echo", "{n}"], []),
        (["dbt", "run", "--vars", '{"dt": "{dt}"}'], []),
    ],
)
def test_inline_code_is_found_by_program_base_name(argv: list[str], found: list[object]) -> None:
    """Shells' `-c` scripts, interpreters' inline code, awk programs and ssh commands are found
    through `env`, `busybox` and other wrappers; script files and their arguments are not."""
    assert [(f.index, f.interpreter) for f in inline_code(argv)] == found


def test_sh_conversion_quotes_a_value_as_one_shell_word() -> None:
    """`{n!sh}` is `shlex.quote(value)`: a real shell sees the literal value as one word."""
    evil = "$(touch x); `touch y` 'q\" \n;|&*"
    script = render("printf '%s' {n!sh}", {"n": evil})
    assert script == "printf '%s' " + shlex.quote(evil)
    assert subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout == evil


def test_templates_list_conversions_and_keep_unknown_ones_as_written() -> None:
    """A placeholder's conversion is listed with it; an unknown one renders as written and
    `{{n!sh}}` is the literal text `{n!sh}`."""
    assert template_fields("{a} {b!sh} {{c!sh}} {d!x}") == [("a", None), ("b", "sh"), ("d", "x")]
    assert placeholders("{a} {b!sh}") == ["a", "b"]
    assert render("{n!x} {{n!sh}} {n}", {"n": "v"}) == "{n!x} {n!sh} v"


def test_render_encodes_each_substituted_value() -> None:
    """`encode` applies to the substituted values only, after the conversion."""
    assert render("/a/{n}?q={n}", {"n": "x/y"}, lambda v: v.upper()) == "/a/X/Y?q=X/Y"


def test_partition_environment_names_and_collisions() -> None:
    """Names are upper-cased with non-identifier characters as `_`; of two names giving one
    variable the first in sort order wins; a value with NUL is left out."""
    env = partition_environ({"dt": "1", "my-var": "2", "DT": "3", "bad": "a\0b"})
    assert env == {"EVENTFLOW_VAR_DT": "3", "EVENTFLOW_VAR_MY_VAR": "2"}


def test_an_undecodable_file_name_is_quarantined_with_escapes() -> None:
    """A surrogate-escaped path is a problem; its quarantine shows `\\xff`, keeps a stable id
    and is storable."""
    rel = os.fsdecode(b"a/bad-\xff.csv")
    obs = Observation(sensor="s", position={"path": rel}, key=rel, cursor=(rel, {"size": 1}))
    problem = observation_problem(obs)
    assert problem is not None
    assert "source position" in problem
    safe = quarantine(obs, problem)
    assert safe.position == {"path": "a/bad-\\xff.csv"}
    assert safe.cursor == ("a/bad-\\xff.csv", {"size": 1})
    assert safe.error == problem
    assert observation_problem(safe) is None
    assert safe.id == quarantine(obs, problem).id


@pytest.mark.parametrize(
    ("payload", "key", "problem"),
    [
        ({"n": "\ud800"}, "k", "payload holds text that is not valid Unicode"),
        (None, "a\0b", "key holds a NUL character"),
        (None, "k" * 5000, "key is 5,000 characters long"),
        ({"big": 2**70, "nul": "a\0b"}, "k", None),
    ],
)
def test_observation_problems(payload: object, key: str, problem: str | None) -> None:
    """Lone surrogates, a NUL in the key and an overlong key are problems; big integers and a
    NUL inside JSON text are not (JSON escapes them)."""
    obs = Observation(sensor="s", position={"o": 1}, key=key, payload=payload)
    found = observation_problem(obs)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_partition_problems() -> None:
    """A partition value with NUL or a partition key over 1,024 bytes cannot be stored."""
    assert partition_problem({"n": "ok"}) is None
    assert "NUL" in (partition_problem({"n": "a\0"}) or "")
    assert "bytes long" in (partition_problem({"n": "é" * 600}) or "")
