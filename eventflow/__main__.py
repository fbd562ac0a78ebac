"""``python -m eventflow`` is the ``eventflow`` command."""

from eventflow.cli import main

main()
