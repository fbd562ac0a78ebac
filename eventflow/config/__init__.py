"""Loading and validating pipeline files."""
