FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventflow ./eventflow
COPY sensors ./sensors
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
CMD ["eventflow", "--help"]
