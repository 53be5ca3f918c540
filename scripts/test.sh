#!/usr/bin/env bash
# The test command (README, and .ci/run calls exactly this). Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
