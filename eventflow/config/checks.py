"""Checks that span sections: references, join variables, templates, expressions, cycles.

They run on whatever validated (a broken rule does not hide a broken dataset) and report
everything they find; the results are the compiled datasets and each rule's ``by``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from eventflow.config.models import NAME, DatasetConfig, DatasetRef, RuleConfig, When
from eventflow.config.report import ConfigPath, Problems, closest, did_you_mean
from eventflow.datasets import DatasetSpec, ExpressionError, compile_expression
from eventflow.patterns import CONVERSIONS, KeyPattern, placeholders, template_fields
from eventflow.pipeline import EMIT_SENSOR, PRODUCED_SENSOR_PREFIX
from eventflow.rules.timing import DeadlineExpr, parse_time, zone
from eventflow.run_hooks import VARIABLES as HOOK_VARIABLES
from eventflow.tasks.environ import env_name
from eventflow.tasks.inline import InlineCode, inline_code

RUN_VARIABLES = ("run_id", "rule", "attempt", "partition")
"""Template variables every task has besides its rule's ``by`` variables."""
CHECK_VARIABLES = ("pipeline_dir",)
"""Template variables a check has besides its rule's ``by`` variables and the run's."""
SAFE_IN_CODE = ("run_id", "rule", "attempt")
"""Variables eventflow makes from a restricted set of characters (letters, digits, ``_.-``):
they may appear in a ``sh -c`` script. The others come from events."""

_BRACES = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RuleView:
    """The parts of a rule the checks read; ``when`` is None where it did not validate."""

    when: When | None
    produces: str | None
    config: RuleConfig | None = None
    """The whole rule where it validated: its timing options are checked too."""
    params: dict[str, str] = field(default_factory=dict)
    """Its ``params`` (those that are text, also when the rule did not validate)."""


@dataclass
class Sections:
    """What the checks see: every name the file declares, and the parts that validated
    (None where the section itself was invalid and is already reported)."""

    sensors: list[str]
    datasets: dict[str, DatasetConfig | None]
    rules: dict[str, RuleView]
    tasks: dict[str, Mapping[str, object]] = field(default_factory=dict)
    """Each rule's task fields (the keys of ``run`` its task validates), whose ``{var}``
    placeholders are checked."""
    task_variables: dict[str, Mapping[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )
    """Each rule's task's own variables (its plugin's ``template_variables``): under a path
    of its fields (``("http", "poll")``), the names its task adds (``id``)."""
    check_tasks: dict[str, list[tuple[ConfigPath, Mapping[str, object]]]] = field(
        default_factory=dict
    )
    """Each rule's ``command`` checks: the check's path and its task fields (``command``,
    ``cwd``, ``env``), whose placeholders are checked as a task's are."""


@dataclass
class Compiled:
    datasets: dict[str, DatasetSpec]
    by: dict[str, tuple[str, ...]]


def check_names(raw: Mapping[str, object], problems: Problems) -> None:
    """Sensor names eventflow keeps for itself (the characters of every name are checked by
    the model's ``Name`` key type)."""
    sensors = raw.get("sensors")
    if not isinstance(sensors, Mapping):
        return
    for name in sensors:
        if isinstance(name, str) and (
            name.startswith(PRODUCED_SENSOR_PREFIX) or name == EMIT_SENSOR
        ):
            problems.add(
                f"the sensor name `{name}` is reserved for eventflow's own observations",
                ("sensors", name),
                hint=f"rename it; names starting with `{PRODUCED_SENSOR_PREFIX}` and"
                f" `{EMIT_SENSOR}` are taken",
            )


class _Checker:
    def __init__(self, sections: Sections, problems: Problems) -> None:
        self.s = sections
        self.problems = problems
        self.specs: dict[str, DatasetSpec] = {}
        self.defined: dict[str, tuple[str, ...]] = {}
        """Variables of each declared dataset whose key and partition names are valid (even
        if its sensor or expressions are not: that is reported once, at the dataset)."""
        self.producers: dict[str, list[str]] = {}
        self.by: dict[str, tuple[str, ...] | None] = {}
        self._resolving: set[str] = set()

    def run(self) -> Compiled:
        for name, ds in self.s.datasets.items():
            if ds is not None:
                self.dataset(name, ds)
        self.collect_producers()
        for name, rule in self.s.rules.items():
            if rule.when is not None:
                self.rule(name, rule.when)
        self.produced_partitions()
        self.cycles()
        by = {rule: vars_ for rule, vars_ in self.by.items() if vars_ is not None}
        return Compiled(self.specs, by)

    # --- datasets ------------------------------------------------------------------------

    def dataset(self, name: str, ds: DatasetConfig) -> None:
        path: ConfigPath = ("datasets", name)
        ok = names_ok = True
        if ds.sensor.startswith(PRODUCED_SENSOR_PREFIX):
            rule = ds.sensor[len(PRODUCED_SENSOR_PREFIX) :]
            ok = False
            self.problems.add(
                f"`{ds.sensor}` is the pseudo-sensor of the datasets rule `{rule}` produces",
                (*path, "sensor"),
                hint=f"write `produces: {name}` in rule `{rule}` and drop this dataset, or name"
                " a sensor of `sensors:`",
            )
        elif ds.sensor not in self.s.sensors:
            ok = False
            self.problems.add(
                f"unknown sensor `{ds.sensor}`",
                (*path, "sensor"),
                hint=did_you_mean(ds.sensor, self.s.sensors, "sensors"),
            )
        if ds.key is not None:
            for m in _BRACES.finditer(ds.key):
                if not _IDENTIFIER.match(m.group(1)):
                    ok = names_ok = False
                    self.problems.add(
                        f"`{m.group(0)}` in the key pattern is not a variable name",
                        (*path, "key"),
                        hint="a {var} name is letters, digits and '_', not starting with a digit",
                    )
        for var, expr in ds.partition.items():
            if not _IDENTIFIER.match(var):
                ok = names_ok = False
                self.problems.add(
                    f"the partition variable `{var}` is not a name `{{var}}` can refer to",
                    (*path, "partition", var),
                    hint="use letters, digits and '_', not starting with a digit",
                )
            ok = self.expression(expr, (*path, "partition", var)) and ok
        if ds.where is not None:
            ok = self.expression(ds.where, (*path, "where")) and ok
        if names_ok:
            found = KeyPattern(ds.key).variables if ds.key is not None else ()
            self.defined[name] = tuple(dict.fromkeys((*found, *ds.partition)))
        if ok:
            self.specs[name] = DatasetSpec.compile(name, ds.sensor, ds.key, ds.partition, ds.where)

    def expression(self, text: str, path: ConfigPath) -> bool:
        try:
            compile_expression(text)
        except ExpressionError as exc:
            self.problems.add(str(exc), path, hint=exc.hint)
            return False
        return True

    # --- what rules produce ----------------------------------------------------------------

    def collect_producers(self) -> None:
        for name, rule in self.s.rules.items():
            if rule.produces is not None:
                self.producers.setdefault(rule.produces, []).append(name)
        for dataset, rules in self.producers.items():
            path: ConfigPath = ("rules", rules[0], "produces")
            if not NAME.match(dataset):
                self.problems.add(
                    f"the dataset name `{dataset}` has characters other than letters, digits,"
                    " '_', '-', '.'",
                    path,
                )
            if dataset not in self.s.datasets and len(rules) > 1:
                for other in rules[1:]:
                    self.problems.add(
                        f"dataset `{dataset}` is produced by rule `{rules[0]}` already",
                        ("rules", other, "produces"),
                        hint="each dataset has one producing rule; produce another dataset here",
                    )

    def produced_partitions(self) -> None:
        """A run announces its partition key (its rule's ``by``) as the partition of what it
        produces: a declared dataset it produces needs every variable it defines in it."""
        for dataset, rules in self.producers.items():
            defined = self.defined.get(dataset)
            for rule in rules:
                by = self.by_of(rule)
                if defined is None or by is None:
                    continue
                lacking = [v for v in defined if v not in by]
                if lacking:
                    self.problems.add(
                        f"`{dataset}` defines {', '.join(defined)} but rule `{rule}` joins on"
                        f" {', '.join(by) or 'nothing'}: its runs cannot announce"
                        f" {', '.join(lacking)}",
                        ("rules", rule, "produces"),
                        hint=f"add {', '.join(lacking)} to the rule's `by`, or produce a dataset"
                        " that is not declared under `datasets:`",
                    )

    def variables_of(self, dataset: str) -> tuple[str, ...] | None:
        """The partition variables ``dataset`` defines, or None when that is not known
        (the dataset is unknown or invalid, or its producer is)."""
        if dataset in self.s.datasets:
            return self.defined.get(dataset)
        producers = self.producers.get(dataset)
        if not producers:
            return None
        return self.by_of(producers[0])

    def by_of(self, name: str) -> tuple[str, ...] | None:
        """The join variables of rule ``name``: its ``by``, else those all inputs define."""
        if name in self.by:
            return self.by[name]
        rule = self.s.rules.get(name)
        when = rule.when if rule is not None else None
        if when is None or name in self._resolving:
            return None  # invalid, or a cycle (reported by cycles())
        if when.by is not None:
            self.by[name] = when.by
            return when.by
        self._resolving.add(name)
        try:
            found = [self.rule_variables(when, d) for d in when.datasets]
        finally:
            self._resolving.discard(name)
        result: tuple[str, ...] | None = None
        if all(v is not None for v in found):
            known = [v for v in found if v is not None]
            first = known[0] if known else ()
            result = tuple(var for var in first if all(var in other for other in known))
        self.by[name] = result
        return result

    # --- rules ----------------------------------------------------------------------------

    def rule(self, name: str, rule: When) -> None:
        here: ConfigPath = ("rules", name, "when")
        all_datasets = sorted({*self.s.datasets, *self.producers})
        seen: set[str] = set()
        for sub, dataset in rule.leaves():
            path = (*here, *sub)
            if dataset in seen:
                self.problems.add(f"dataset `{dataset}` is listed twice", path)
            seen.add(dataset)
            if dataset not in self.s.datasets and dataset not in self.producers:
                self.problems.add(
                    f"unknown dataset `{dataset}`",
                    path,
                    hint=did_you_mean(dataset, all_datasets, "datasets"),
                )
        if rule.by is not None:
            self.explicit_by(name, rule)
        by = self.by_of(name)
        config = self.s.rules[name].config
        self.key_maps(name, rule)
        if config is not None:
            self.filters(name, rule, config)
            if config.batch is not None:
                by = self.batch(name, rule, config)
            self.timing(name, config, by)
        params = self.s.rules[name].params
        if by is not None:
            self.params(name, by, params)
        task = self.s.tasks.get(name)
        if by is not None and task is not None:
            own = self.s.task_variables.get(name, {})
            self.placeholders(name, (*by, *params), task, own=own)
        alert = self.s.tasks.get(f"{name}:on_deadline")
        if by is not None and alert is not None:
            self.placeholders(name, by, alert, ("rules", name, "on_deadline", "run"))
        for kind, variables in HOOK_VARIABLES.items():
            hook = self.s.tasks.get(f"{name}:{kind}")
            if by is not None and hook is not None:
                self.placeholders(name, (*by, *variables), hook, ("rules", name, kind))
        for path, fields in self.s.check_tasks.get(name, []):
            # A check runs with the partition's variables and the run's, like the rule's task.
            if by is not None:
                self.placeholders(name, (*by, *CHECK_VARIABLES), fields, path)

    def params(self, name: str, by: tuple[str, ...], params: Mapping[str, str]) -> None:
        """Each ``params`` entry: a template variable name of its own, a valid expression."""
        for var, expr in params.items():
            path: ConfigPath = ("rules", name, "params", var)
            if not _IDENTIFIER.match(var):
                self.problems.add(
                    f"the param `{var}` is not a name `{{var}}` can refer to",
                    path,
                    hint="use letters, digits and '_', not starting with a digit",
                )
            elif var in by or var in RUN_VARIABLES:
                what = "partition variable" if var in by else "run variable"
                self.problems.add(
                    f"the param `{var}` has the name of a {what} of rule `{name}`",
                    path,
                    hint=f"rename it; `{{{var}}}` already means the {what}",
                )
            self.expression(expr, path)

    def rule_variables(self, when: When, dataset: str) -> tuple[str, ...] | None:
        """The variables ``dataset`` gives the rule: its own and those its ``vars`` map."""
        defined = self.variables_of(dataset)
        mapped = _refs(when).get(dataset)
        if defined is None or mapped is None or not mapped.vars:
            return defined
        return tuple(dict.fromkeys((*defined, *mapped.vars)))

    def key_maps(self, name: str, when: When) -> None:
        """Each ``vars`` template may use only the variables its dataset defines."""
        for sub, dataset in when.leaves():
            ref = _item(when, sub[:-1]) if sub[-1] == "dataset" else None
            if not isinstance(ref, DatasetRef) or not ref.vars:
                continue
            defined = self.variables_of(dataset)
            for var, template in ref.vars.items():
                path = ("rules", name, "when", *sub[:-1], "vars", var)
                used = placeholders(template)
                unknown = [v for v in used if defined is not None and v not in defined]
                if not _IDENTIFIER.match(var) or not used or unknown:
                    listed = ", ".join(defined or ()) or "none"
                    self.problems.add(
                        f"`{var}: {template}` does not make a partition variable from"
                        f" `{dataset}`'s variables",
                        path,
                        hint=f"write `{{var}}` placeholders of {dataset}'s variables: {listed}",
                    )

    def filters(self, name: str, when: When, config: RuleConfig) -> None:
        if config.where is not None:
            self.expression(config.where, ("rules", name, "where"))
        for sub, _ in when.leaves():
            item = _item(when, sub[:-1]) if sub[-1] == "dataset" else None
            if isinstance(item, DatasetRef) and item.where is not None:
                self.expression(item.where, ("rules", name, "when", *sub[:-1], "where"))

    def batch(self, name: str, when: When, config: RuleConfig) -> tuple[str, ...]:
        """A batch rule collects single inputs: no join options; its key is `batch.by`."""
        path: ConfigPath = ("rules", name)
        for option in ("quiet", "expect_by", "expect"):
            if getattr(config, option) is not None:
                self.problems.add(
                    f"`{option}` does not apply to a batch rule",
                    (*path, option),
                    hint="a batch fires on `max_events` or `max_wait`; remove one of the two",
                )
        if not when.simple or when.within is not None or when.by is not None:
            self.problems.add(
                "a batch rule takes its inputs as they come: write `when: {any: [...]}` with"
                " dataset names only",
                (*path, "when"),
                hint="partition batches with `batch.by`; `within`, `by`, counts and nested"
                " conditions belong to joins",
            )
        by = config.batch.by if config.batch is not None else ()
        for j, var in enumerate(by):
            for dataset in dict.fromkeys(when.datasets):
                defined = self.variables_of(dataset)
                if defined is not None and var not in defined:
                    self.problems.add(
                        f"`{var}` is not a partition variable of dataset `{dataset}`",
                        (*path, "batch", "by", j),
                        hint=f"`{dataset}` defines: {', '.join(defined) or 'nothing'}",
                    )
        self.by[name] = by
        return by

    def timing(self, name: str, config: RuleConfig, by: tuple[str, ...] | None) -> None:
        path: ConfigPath = ("rules", name)
        try:
            tz = zone(config.timezone)
        except ValueError as exc:
            self.problems.add(str(exc), (*path, "timezone"))
            return
        if config.expect_by is not None:
            try:
                deadline = DeadlineExpr.parse(config.expect_by, tz)
            except ValueError as exc:
                self.problems.add(
                    f"`expect_by` is not a deadline: {exc}",
                    (*path, "expect_by"),
                    hint='write a time from partition variables and offsets: "{dt}T06:00Z'
                    ' + 1d", "{dt} {hr}:00 + 90m"',
                )
            else:
                unknown = [v for v in deadline.variables if by is not None and v not in by]
                if unknown:
                    self.problems.add(
                        f"`expect_by` uses {', '.join(unknown)}, which the rule does not join on",
                        (*path, "expect_by"),
                        hint=f"the rule's partition variables: {', '.join(by or ()) or 'none'}",
                    )
        elif config.on_deadline != "event":  # run_partial, or an alert task
            self.problems.add(
                "`on_deadline` needs a deadline", (*path, "on_deadline"), hint="add `expect_by`"
            )
        if config.on_missed is not None and config.expect_by is None:
            self.problems.add(
                "`on_missed` runs at a missed deadline, but the rule has no `expect_by`",
                (*path, "on_missed"),
                hint='add `expect_by: "{dt}T06:00Z + 1d"` (say), or drop `on_missed`',
            )
        if config.on_missed is not None and not isinstance(config.on_deadline, str):
            self.problems.add(
                "`on_missed` and `on_deadline: {run: ...}` both run a task at a missed deadline",
                (*path, "on_missed"),
                hint="keep `on_missed` (it also gets `{deadline}` and `{missing}`)",
            )
        expect = config.expect
        if expect is None:
            return
        if config.expect_by is None:
            self.problems.add(
                "`expect` names partitions for their deadline, but the rule has no `expect_by`",
                (*path, "expect"),
                hint='add `expect_by: "{dt}T06:00Z + 1d"` (say)',
            )
        if by is not None and set(expect.partition) != set(by):
            self.problems.add(
                f"`expect.partition` gives {', '.join(expect.partition) or 'nothing'} but the"
                f" rule joins on {', '.join(by) or 'nothing'}",
                (*path, "expect", "partition"),
                hint="give one strftime format per variable of the rule's `by`",
            )
        if expect.every.total_seconds() < 1:
            self.problems.add("`every` must be at least 1s", (*path, "expect", "every"))
        if expect.start is not None:
            try:
                parse_time(expect.start, tz)
            except ValueError as exc:
                self.problems.add(str(exc), (*path, "expect", "start"))

    def explicit_by(self, name: str, rule: When) -> None:
        by = rule.by or ()
        path: ConfigPath = ("rules", name, "when", "by")
        for j, var in enumerate(by):
            if var in by[:j]:
                self.problems.add(f"`{var}` is listed twice", (*path, j))
                continue
            for dataset in dict.fromkeys(rule.datasets):
                defined = self.rule_variables(rule, dataset)
                if defined is None or var in defined:
                    continue
                listed = ", ".join(defined) if defined else "no partition variables"
                guess = closest(var, defined)
                self.problems.add(
                    f"`{var}` is not a partition variable of dataset `{dataset}`",
                    (*path, j),
                    hint=(f"did you mean `{guess}`? " if guess else "")
                    + f"`{dataset}` defines: {listed}; define `{var}` there (a `{{{var}}}` in"
                    " its key or a `partition:` entry) or remove it from `by`",
                )

    def placeholders(
        self,
        name: str,
        by: tuple[str, ...],
        task: Mapping[str, object],
        base: ConfigPath | None = None,
        own: Mapping[tuple[str, ...], tuple[str, ...]] | None = None,
    ) -> None:
        base = base or ("rules", name, "run")
        for path, text in _strings(dict(task), base):
            within = path[len(base) :]
            added = [
                v for at, names in (own or {}).items() if within[: len(at)] == at for v in names
            ]
            available = [*by, *RUN_VARIABLES, *added]
            for var, conversion in template_fields(text):
                if conversion is not None and conversion not in CONVERSIONS:
                    known = ", ".join(f"`{{{var}!{c}}}`" for c in CONVERSIONS)
                    self.problems.add(
                        f"unknown conversion `!{conversion}` in `{{{var}!{conversion}}}`",
                        path,
                        hint=f"the conversions are: {known} (quoted for a shell)",
                    )
                if var in available:
                    continue
                guess = closest(var, available)
                listed = ", ".join(f"{{{v}}}" for v in available)
                self.problems.add(
                    f"unknown template variable `{{{var}}}`",
                    path,
                    hint=(f"did you mean `{{{guess}}}`? " if guess else "")
                    + f"available: {listed}; write {{{{ and }}}} for literal braces",
                )

        command = task.get("command")
        if isinstance(command, list) and all(isinstance(a, str) for a in command):
            self.inline_code(command, (*base, "command"))

    def inline_code(self, command: list[str], path: ConfigPath) -> None:
        """A value from an event must not become code: no ``{var}`` in a ``sh -c`` script
        (unless quoted with ``{var!sh}``) nor in any interpreter's inline code."""
        for found in inline_code(command):
            text = command[found.index]
            for var, conversion in template_fields(text):
                if var in SAFE_IN_CODE or (found.shell and conversion == "sh"):
                    continue
                program = " ".join(command[: found.index])
                self.problems.add(
                    f"`{{{var}{'!' + conversion if conversion else ''}}}` is put into the code"
                    f" that `{program}` runs: a value from an event would run as code",
                    (*path, found.index),
                    hint=_safe_forms(var, found),
                )

    # --- cycles ---------------------------------------------------------------------------

    def cycles(self) -> None:
        """Report each cycle rule -> produced dataset -> consuming rule -> ... once."""
        consumers: dict[str, list[str]] = {}
        for name, rule in self.s.rules.items():
            if rule.when is not None:
                for dataset in dict.fromkeys(rule.when.datasets):
                    consumers.setdefault(dataset, []).append(name)

        def edges(rule_name: str) -> list[str]:
            rule = self.s.rules.get(rule_name)
            if rule is None or rule.produces is None:
                return []
            return consumers.get(rule.produces, [])

        reported: set[tuple[str, ...]] = set()
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        stack: list[str] = []

        def visit(rule_name: str) -> None:
            state[rule_name] = 1
            stack.append(rule_name)
            for nxt in edges(rule_name):
                if state.get(nxt) == 1:
                    cycle = stack[stack.index(nxt) :]
                    start = cycle.index(min(cycle))
                    cycle = cycle[start:] + cycle[:start]
                    if tuple(cycle) not in reported:
                        reported.add(tuple(cycle))
                        self.report_cycle(cycle)
                elif nxt not in state:
                    visit(nxt)
            stack.pop()
            state[rule_name] = 2

        for name in self.s.rules:
            if name not in state:
                visit(name)

    def report_cycle(self, cycle: list[str]) -> None:
        steps: list[str] = []
        for rule_name in cycle:
            rule = self.s.rules[rule_name]
            steps += [rule_name, rule.produces or "?"]
        text = " -> ".join([*steps, cycle[0]])
        self.problems.add(
            f"rules form a cycle through `produces`: {text}",
            ("rules", cycle[0], "produces"),
            hint="a rule cannot depend, directly or through other rules, on what it produces",
        )


def check(sections: Sections, problems: Problems) -> Compiled:
    """Run every cross-section check; the datasets and ``by`` of what passed them."""
    checker = _Checker(sections, problems)
    compiled = checker.run()
    for dataset, rules in checker.producers.items():
        if dataset not in sections.datasets:
            by = compiled.by.get(rules[0])
            if by is not None:
                compiled.datasets[dataset] = DatasetSpec.compile(
                    dataset, PRODUCED_SENSOR_PREFIX + rules[0], None, {}, None, declared=by
                )
    return compiled


def _safe_forms(var: str, found: InlineCode) -> str:
    """The ways to hand ``var`` to the code of ``found.interpreter`` as data."""
    env = env_name(var)
    if found.shell:
        return (
            f'read it from the environment, quoted: `"${env}"` (every run has the'
            f" partition and params as EVENTFLOW_VAR_<NAME>), or opt in to shell quoting:"
            f" `{{{var}!sh}}` (docs/reference/security.md)"
        )
    how = {
        "python": f'os.environ["{env}"]',
        "pypy": f'os.environ["{env}"]',
        "perl": f"$ENV{{{env}}}",
        "ruby": f'ENV["{env}"]',
        "node": f"process.env.{env}",
        "nodejs": f"process.env.{env}",
        "bun": f"process.env.{env}",
        "deno": f'Deno.env.get("{env}")',
        "php": f'getenv("{env}")',
        "lua": f'os.getenv("{env}")',
        "Rscript": f'Sys.getenv("{env}")',
        "awk": f'ENVIRON["{env}"]',
    }.get(found.interpreter, f"the environment variable {env}")
    return (
        f"read it from the environment: `{how}` (every run has the partition and params as"
        f" EVENTFLOW_VAR_<NAME>), or pass `{{{var}}}` as a separate argument after the"
        " code (docs/reference/security.md)"
    )


def _refs(when: When) -> dict[str, DatasetRef]:
    """The datasets of ``when`` written with options, by name."""
    out = {}
    for sub, dataset in when.leaves():
        item = _item(when, sub[:-1]) if sub[-1] == "dataset" else None
        if isinstance(item, DatasetRef):
            out[dataset] = item
    return out


def _item(when: When, path: tuple[str | int, ...]) -> object:
    """The condition item at ``path`` (as :meth:`When.leaves` gives it) below ``when``."""
    node: object = when
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)  # type: ignore[index]
    return node


def _strings(value: object, path: ConfigPath) -> Iterator[tuple[ConfigPath, str]]:
    """Every string inside ``value`` (lists and mappings) with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
