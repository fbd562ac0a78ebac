# eventflow with every transport (Kafka, S3, MQTT, the HTTP server, OpenLineage).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventflow ./eventflow
COPY sensors ./sensors
# The distribution eventflow-orchestrator with every extra, from this checkout, non-editable
# (the name `eventflow` on the package index is an unrelated project). The local package
# itself cannot be pinned; its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[all]"
COPY examples ./examples
# nobody: no shell, no home; state lives in PostgreSQL or a mounted volume.
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["eventflow"]
CMD ["--help"]
