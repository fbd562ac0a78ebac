#!/usr/bin/env bash
# Install what the Flink tier of the tests (tests/flink/, marker `flink`) needs: a Java 17
# runtime from Debian where none is on PATH, a slim PyFlink 2.3 in a virtual environment of
# its own (too heavy for eventflow's, and its pins conflict), and the Kafka connector jars.
# Everything but Java lives under the cache directory, so a rerun costs a second.
# Prints the cache directory's path last; tests/services/flink.py reads the same layout.
set -euo pipefail

FLINK_VERSION=2.3.0
CACHE="${EVENTFLOW_TEST_CACHE:-$HOME/.cache/eventflow-test}/flink-$FLINK_VERSION"
PYTHON="${PYTHON:-python3}"

install_java() {
  if command -v java >/dev/null 2>&1; then
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install a Java 17 runtime with your system's package manager" >&2
    exit 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing a Java 17 runtime for the Flink tests (openjdk-17-jre-headless)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null \
    || { $sudo apt-get update -q >/dev/null \
         && $sudo apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null; }
}

# The slim set (FLINK.md): SQL and Table jobs without Python UDFs, so no Beam, grpc or pandas.
install_pyflink() {
  if [ -f "$CACHE/venv/.complete" ]; then
    return
  fi
  echo "installing PyFlink $FLINK_VERSION (slim) into $CACHE/venv" >&2
  rm -rf "$CACHE/venv"
  "$PYTHON" -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install --quiet --no-deps "apache-flink==$FLINK_VERSION" \
    "apache-flink-libraries==$FLINK_VERSION" py4j==0.10.9.7 "python-dateutil<3" six pytz \
    cloudpickle==2.2.1 ruamel.yaml typing-extensions
  touch "$CACHE/venv/.complete"
}

# Only this third-party wheel carries the Kafka connector; installed it would put Flink 2.0
# jars into 2.3, so only its two jars are taken out of it.
install_kafka_jars() {
  if [ -f "$CACHE/jars/flink-connector-kafka.jar" ] && [ -f "$CACHE/jars/kafka-clients.jar" ]; then
    return
  fi
  echo "extracting the Flink Kafka connector jars into $CACHE/jars" >&2
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  "$CACHE/venv/bin/pip" download --quiet --no-deps --dest "$tmp" \
    shigawire-apache-flink-libraries==2.0.0.post1
  mkdir -p "$CACHE/jars"
  "$CACHE/venv/bin/python" - "$tmp" "$CACHE/jars" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in ("flink-connector-kafka.jar", "kafka-clients.jar"):
        (pathlib.Path(sys.argv[2]) / name).write_bytes(zf.read(f"pyflink/lib/{name}"))
PY
}

mkdir -p "$CACHE"
install_java
install_pyflink
install_kafka_jars
echo "$CACHE"
