"""Real services started by the test suite."""
