"""Test fixtures for the kafka service (to be filled in)."""
