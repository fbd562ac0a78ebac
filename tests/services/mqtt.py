"""Test fixtures for the mqtt service (to be filled in)."""
