#!/usr/bin/env bash
# Install Corral with its test tools and run the whole suite (unit, then the
# privileged integration tests that make real containers).  Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install.sh" --test
cd "$here"
# Tests import the installed package: what we test is what users run.
exec "$here/.venv/bin/python" -m pytest -p no:cacheprovider --durations=15 "${@:-tests}"
