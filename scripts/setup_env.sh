#!/usr/bin/env bash
# Create (or reuse) .venv and install napari-medseg into it.
#   scripts/setup_env.sh [EXTRAS]     e.g. "napari" or "napari,test"
# PyTorch is installed first, so that pip never swaps it for another build:
#   - a torch already in .venv is kept (a user's CUDA build stays);
#   - a local CPU wheel offered by pip's find-links (as on the CI machines) is used;
#   - with an NVIDIA GPU, PyPI's default (CUDA) build;
#   - otherwise the CPU build from PyTorch's CPU index, falling back to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-napari}"
TORCH_VERSION="${MEDSEG_TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-python3}"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "[setup] $PYTHON not found: install Python >= 3.10 (e.g. apt-get install python3 python3-venv)" >&2
    exit 1
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "[setup] napari-medseg needs Python >= 3.10; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 1
}
# A usable .venv has an activate script and a working pip; anything else (e.g. left by a
# first run on a machine without python3-venv) is rebuilt.
if [ ! -f .venv/bin/activate ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "[setup] Python's venv module is missing: apt-get install python3-venv" >&2
        exit 1
    fi
    "$PYTHON" -m venv --clear .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

if python -c "import torch" 2>/dev/null; then
    echo "[setup] keeping torch $(python -c 'import torch; print(torch.__version__)')"
elif pip install -q --no-index --no-deps "torch==${TORCH_VERSION}" 2>/dev/null; then
    echo "[setup] torch ${TORCH_VERSION} from a local wheel"
    pip install -q "torch==${TORCH_VERSION}"   # its pure-Python dependencies
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: torch with CUDA from PyPI"
    pip install -q "torch>=2.1"
else
    echo "[setup] no GPU: CPU build of torch"
    pip install -q --timeout 30 "torch>=2.1" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple || pip install -q "torch>=2.1"
fi

# keep that torch: a dependency asking for torchvision (timm, via nnU-Net's network
# package) must get the torchvision of this torch, not a newer torch with it
TORCH_PIN=".venv/torch-constraint.txt"
python -c 'from importlib.metadata import version; print("torch==" + version("torch").split("+")[0])' > "$TORCH_PIN"
pip install -q -e ".[${EXTRAS}]" -c "$TORCH_PIN"
case ",${EXTRAS}," in
    *,test,*)  # the nnU-Net and nnInteractive references, without timm/torchvision (see
               # pyproject's test extra)
        pip install -q --no-deps "nnunetv2==2.8.1" "dynamic-network-architectures>=0.4.4,<0.5" \
            "nninteractive==2.6.0"
        # SAM2's reference: an sdist, built against this torch (an isolated build would
        # fetch another torch) and without its optional CUDA extension
        SAM2_BUILD_CUDA=0 pip install -q --no-deps --no-build-isolation "sam2==1.1.0" ;;
esac
echo "[setup] napari-medseg installed in $(pwd)/.venv with extras [${EXTRAS}]"
