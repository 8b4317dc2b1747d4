#!/usr/bin/env bash
# Install napari-medseg with its test dependencies into .venv and run the whole test
# suite. Without a display it starts Xvfb (installing Xvfb, Mesa and Qt's X libraries
# with apt-get when they are missing), because napari needs an X display with OpenGL.
#   scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries napari/Qt need under X, and Xvfb itself.
APT_PACKAGES="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3 \
libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0"
missing=""
if command -v dpkg >/dev/null 2>&1; then
    for package in $APT_PACKAGES; do
        dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
    done
fi
if [ -n "$missing" ]; then
    echo "[test] installing system packages:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

bash scripts/setup_env.sh "napari,test"
# shellcheck disable=SC1091
. .venv/bin/activate

export MEDSEG_REQUIRE_GUI=1   # the GUI tests must run, not skip
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
    exec python -m pytest "$@"
fi
exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest "$@"
