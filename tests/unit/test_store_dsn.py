"""State store DSNs: scheme lookup and redaction."""

from __future__ import annotations

import pytest

from eventflow.errors import StoreError
from eventflow.store import open_store, redact_dsn


def test_dsn_passwords_are_redacted() -> None:
    """A DSN's password never reaches output: redact_dsn replaces it, other DSNs pass."""
    assert redact_dsn("postgresql://ef:s3cret@db:5432/ef") == "postgresql://ef:***@db:5432/ef"
    assert redact_dsn("sqlite:///.eventflow/state.db") == "sqlite:///.eventflow/state.db"


def test_unknown_scheme_error_names_the_known_ones_without_the_password(tmp_path: object) -> None:
    """An unknown scheme is a StoreError that lists known schemes and hides the password."""
    with pytest.raises(StoreError) as info:
        open_store("nosuch://u:s3cret@host/db", tmp_path)  # type: ignore[arg-type]
    assert "s3cret" not in str(info.value)
    assert "sqlite://" in str(info.value)
