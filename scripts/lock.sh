#!/usr/bin/env bash
# Rewrite requirements.lock from the packages installed in .venv. Run it after changing dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
{
    echo "# Exact versions of every package cnnrepro runs with; setup.sh installs them with --no-deps."
    echo "# Regenerate with scripts/lock.sh after changing dependencies in pyproject.toml."
    .venv/bin/python -m pip freeze --all --exclude-editable | grep -vE "^(cnnrepro|pip)==" | sort -f
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
