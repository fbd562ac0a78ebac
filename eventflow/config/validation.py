"""Pydantic's validation errors as problems a person can act on.

Each error's ``loc`` is mapped back to a path of the file (and so to a line); unknown keys
get a "did you mean" over the fields of the model they were found in, missing keys the
field's description, and a validator's ``"...; do this"`` message becomes message and hint.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from eventflow.config.report import ConfigPath, Problems, closest, did_you_mean

M = TypeVar("M", bound=BaseModel)

_SHAPES = {
    "tuple_type": "should be a list, e.g. `[a, b]`",
    "list_type": "should be a list, e.g. `[a, b]`",
    "dict_type": "should be a mapping (`key: value` lines)",
    "model_type": "should be a mapping (`key: value` lines)",
    "model_attributes_type": "should be a mapping (`key: value` lines)",
    "string_type": "should be text",
}


def validate(model: type[M], data: Any, problems: Problems, prefix: ConfigPath = ()) -> M | None:
    """``model`` validated from ``data``, or None after reporting every error under ``prefix``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        report(exc.errors(include_url=False), model, data, problems, prefix)
        return None


def report(
    errors: Sequence[ErrorDetails],
    model: type[BaseModel],
    data: Any,
    problems: Problems,
    prefix: ConfigPath,
) -> None:
    """Report each pydantic error (raised validating ``data`` with ``model``) under ``prefix``."""
    suggested: set[ConfigPath] = set()  # missing keys an unknown key probably meant
    for err in errors:
        path = data_path(data, err["loc"])
        if err["type"] == "extra_forbidden" and path:
            guess = closest(str(path[-1]), field_names(model_at(model, path[:-1])))
            if guess is not None:
                suggested.add((*path[:-1], guess))
    for err in errors:
        path = data_path(data, err["loc"], missing=err["type"] == "missing")
        if err["type"] == "missing" and path in suggested:
            continue
        message, hint = describe(err, model, path)
        problems.add(message, (*prefix, *path), hint=hint)


def describe(err: ErrorDetails, model: type[BaseModel], path: ConfigPath) -> tuple[str, str | None]:
    """Message and hint for one pydantic error at ``path`` of data validated by ``model``."""
    kind = err["type"]
    last = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        return f"unknown key `{last}`", did_you_mean(last, field_names(model_at(model, path[:-1])))
    if kind == "missing":
        parent = model_at(model, path[:-1])
        field = parent.model_fields.get(last) if parent is not None else None
        what = f", {_sentence(field.description)}" if field and field.description else ""
        return f"missing required key `{last}`", f"add `{last}:`{what}"
    if "[key]" in err["loc"]:
        if kind == "string_pattern_mismatch":
            return (
                f"the name `{last}` has characters other than letters, digits, '_', '-', '.'",
                None,
            )
        return "a name must be text", "quote it"
    if kind in ("value_error", "assertion_error"):
        text = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        message, _, hint = text.partition("; ")
        return message, hint or None
    if kind == "string_type" and isinstance(err.get("input"), bool | int | float | date):
        read = type(err["input"]).__name__.replace("bool", "boolean").replace("int", "number")
        return "should be text", f"quote the value: YAML reads it as a {read}"
    if kind in _SHAPES:
        return _SHAPES[kind], None
    msg = str(err["msg"])
    return (msg[len("Input ") :] if msg.startswith("Input should") else msg), None


def data_path(data: Any, loc: Sequence[int | str], *, missing: bool = False) -> ConfigPath:
    """The part of pydantic's ``loc`` that addresses ``data`` (union and validator tags and
    ``[key]`` dropped); a missing key is kept as the last element."""
    path: list[str | int] = []
    here = data
    for i, part in enumerate(loc):
        if _has(here, part):
            path.append(part)
            here = here[part]
        elif missing and i == len(loc) - 1:
            path.append(part)
        # anything else is a union member or validator tag, or `[key]`: not in the file
    return tuple(path)


def _has(here: Any, part: int | str) -> bool:
    if isinstance(here, Mapping):
        return part in here
    return isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here)


def model_at(model: type[BaseModel], path: ConfigPath) -> type[BaseModel] | None:
    """The model that validates the mapping at ``path`` under ``model``, if it is one."""
    current: Any = model
    for part in path:
        current = _step(current, part)
        if current is None:
            return None
    return current if _is_model(current) else None


def _step(tp: Any, part: str | int) -> Any:
    for candidate in _flatten(tp):
        if _is_model(candidate):
            if isinstance(part, str) and part in candidate.model_fields:
                return candidate.model_fields[part].annotation
            continue
        origin, args = get_origin(candidate), get_args(candidate)
        if origin in (dict, Mapping) and len(args) == 2 and isinstance(part, str):
            return args[1]
        if origin in (list, tuple, Sequence) and args and isinstance(part, int):
            return args[0]
    return None


def _flatten(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return _flatten(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [c for arg in get_args(tp) if arg is not type(None) for c in _flatten(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def field_names(model: type[BaseModel] | None) -> list[str]:
    return list(model.model_fields) if model is not None else []


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]
