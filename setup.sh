#!/usr/bin/env bash
# Create .venv and install cnnrepro with exactly the versions in requirements.lock.
#
# The lock is installed with --no-deps, so pip installs the listed versions and resolves nothing. This is also
# how facenet-pytorch 2.6.0 gets in without its pins (torch<2.3, torchvision<0.18, numpy<2, Pillow<10.3),
# which would otherwise downgrade the whole stack; its MTCNN runs on the locked torch, numpy and Pillow.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --no-deps -r requirements.lock
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python -m pip check 2>&1 | grep -v '^facenet-pytorch 2.6.0 has requirement' || true
echo "installed; activate with: . .venv/bin/activate"
