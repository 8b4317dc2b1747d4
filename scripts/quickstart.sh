#!/usr/bin/env bash
# Install napari-medseg into .venv and run the main job on the bundled sample scan:
# napari opens with the sample CT and the plugin's widgets, or, without a display,
# the headless demo runs and prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh napari
# shellcheck disable=SC1091
. .venv/bin/activate
exec medseg demo "$@"
