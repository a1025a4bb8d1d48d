#!/usr/bin/env bash
# Python toolchain for the project: uv (from PyPI) and the locked virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
fi
uv sync --frozen --quiet
