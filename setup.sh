#!/usr/bin/env bash
# Create .venv and install cnnrepro with exactly the versions in requirements.lock.
#
# The lock is installed with --no-deps, so pip installs the listed versions and resolves nothing. This is also
# how facenet-pytorch 2.6.0 gets in without its pins (torch<2.3, torchvision<0.18, numpy<2, Pillow<10.3),
# which would otherwise downgrade the whole stack; its MTCNN runs on the locked torch, numpy and Pillow.
#
# --with-frontalize also creates .venv-frontalize from requirements-frontalize.lock, the MediaPipe environment
# that align.method 3d needs (see that file for why it is separate and installed with --no-deps).
set -euo pipefail
cd "$(dirname "$0")"

frontalize=false
for arg in "$@"; do
    case "$arg" in
        --with-frontalize) frontalize=true ;;
        *) echo "invalid option $arg; allowed: --with-frontalize" >&2; exit 2 ;;
    esac
done

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
if [ "$frontalize" = true ]; then
    if [ ! -x .venv-frontalize/bin/python ]; then
        echo "creating .venv-frontalize with $("$python" --version)"
        "$python" -m venv .venv-frontalize
    fi
    .venv-frontalize/bin/python -m pip install --quiet --no-deps -r requirements-frontalize.lock
    # Load the face-mesh model once, so that a broken environment shows here and not in the align stage.
    .venv-frontalize/bin/python -c "from mediapipe.python.solutions import face_mesh; face_mesh.FaceMesh(static_image_mode=True).close()" 2>/dev/null
    echo "installed .venv-frontalize; align.method 3d finds it there (or set CNNREPRO_FRONTALIZE_PYTHON)"
fi
