"""Data-quality checks on the partitions a rule produces (``checks:`` on a rule).

A run of a rule with checks that succeeds does not announce its ``produces`` dataset at
once: its result transaction records a *gate* (:class:`~eventflow.records.CheckGate`,
``pending``) instead. The checker (:mod:`.checker`) runs the rule's checks with their own
retries and timeouts and records the outcome in one transaction with what it causes: the
announcement when every blocking check passed (``passed``), ``eventflow.check.failed``
events and a ``blocked`` gate when one failed. A SIGKILL in between leaves the gate pending
(or ``running``, taken back at start-up), so the checks run again; they are never skipped.

- :mod:`.config`: the ``checks:`` and ``connections:`` sections;
- :mod:`.suite`: checks compiled with their runners;
- :mod:`.expect`: a result value against its bounds, the previous partition's and its age;
- :mod:`.sources`: what each kind of check runs (command, python, sql, exists, value);
- :mod:`.sql`: DuckDB and PostgreSQL queries;
- :mod:`.gates`: gates made, evaluated, re-run and overridden;
- :mod:`.checker`: the loop that runs the pending gates.
"""
