"""eventflow's benchmarks: ``python -m benchmarks [NAME ...]`` (``make bench``)."""
