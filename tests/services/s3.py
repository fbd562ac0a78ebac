"""Test fixtures for the s3 service (to be filled in)."""
